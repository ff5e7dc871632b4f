package presence

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"globalpresence/internal/netproxy"
	"globalpresence/internal/redisnode"
)

// The recovery paths of the Redis store, each a fault that broke an earlier
// version: a store restarted empty, a fast primary restart, a slow node,
// skewed clocks, retries, and a replica down under a write.

// wipe restarts a node with none of its data, as a primary without
// persistence (or a KeyDB node on a fresh disk) comes back after a crash.
func wipe(t *testing.T, node *redisnode.Node, dir string) {
	t.Helper()
	if err := node.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "appendonlydir")); err != nil {
		t.Fatal(err)
	}
	if err := node.Restart(); err != nil {
		t.Fatal(err)
	}
	// (Instances may have beaten since: only their liveness keys are back.)
	if keys, err := node.Do("KEYS", "gp:*"); err != nil || strings.Contains(keys, ":light:") || strings.Contains(keys, ":feed:") {
		t.Fatalf("after the wipe the node holds %q (%v)", keys, err)
	}
}

// linkTo is a proxy to node, to cut, stall and restore its link.
func linkTo(t *testing.T, node *redisnode.Node) *netproxy.Proxy {
	t.Helper()
	link, err := netproxy.Start("127.0.0.1:0", node.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = link.Close() })
	return link
}

func eventually(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A store that restarts empty gets the lightbulb and feed back from the
// instances' memory within 5 s, with every flip counted once; a fresh
// instance then reads them from the store.
func TestRedisStoreWipedRecordsComeBack(t *testing.T) {
	dir := t.TempDir()
	node := redisnode.MustStart(t, redisnode.Options{Dir: dir})
	ctx := context.Background()
	ams := openRedis(t, RedisConfig{URL: node.URL(), Region: "ams"})
	syd := openRedis(t, RedisConfig{URL: node.URL(), Region: "syd"})
	for _, s := range []*Redis{ams, syd} {
		_, _ = s.Snapshot(ctx, "home", AllParts)
	}
	for range 3 {
		for _, s := range []*Redis{ams, syd} {
			if _, err := s.Switch(ctx, "home", Switch{By: "U"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := syd.Say(ctx, "home", Post{Text: "one"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ams.Say(ctx, "home", Post{Text: "two"}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Redis{ams, syd} {
		waitSnapshot(t, s, "home", func(s Snapshot) bool { return s.Light.Flips == 6 && len(s.Messages) == 2 })
	}

	wipe(t, node, dir)
	waitReady(t, ams)
	waitReady(t, syd)
	// One more flip as soon as the store takes writes: it must add to the
	// six, not start a new count.
	if _, err := ams.Switch(ctx, "home", Switch{By: "U"}); err != nil {
		t.Fatal(err)
	}
	fresh := openRedis(t, RedisConfig{URL: node.URL(), Region: "iad"})
	waitSnapshot(t, fresh, "home", func(s Snapshot) bool {
		return s.Light.Flips == 7 && s.Light.On && len(s.Messages) == 2
	})
	for _, s := range []*Redis{ams, syd} {
		waitSnapshot(t, s, "home", func(s Snapshot) bool { return s.Light.Flips == 7 && len(s.Messages) == 2 })
	}
}

// A primary that restarts empty faster than a poll: the instance reading
// from the replica notices (the replica loaded a new full sync), and the
// records come back; the replica never serves an emptied room as live.
func TestRedisFastPrimaryRestart(t *testing.T) {
	dir := t.TempDir()
	primary := redisnode.MustStart(t, redisnode.Options{Dir: dir})
	replica := redisnode.MustStart(t, redisnode.Options{ReplicaOf: primary.Addr()})
	ctx := context.Background()
	s := openRedis(t, RedisConfig{URL: replica.URL(), WriteURL: primary.URL(), Region: "syd"})
	on := true
	if _, err := s.Switch(ctx, "home", Switch{Set: &on, By: "U"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Say(ctx, "home", Post{Text: "kept"}); err != nil {
		t.Fatal(err)
	}
	waitSnapshot(t, s, "home", func(s Snapshot) bool { return s.Light.On && len(s.Messages) == 1 })
	eventually(t, 5*time.Second, "the replica has the message", func() bool {
		n, _ := replica.Do("LLEN", feedKey("home", "syd"))
		return n == "1"
	})

	wipe(t, primary, dir)
	eventually(t, 10*time.Second, "the replica synced from the restarted primary", func() bool {
		p, _ := primary.Do("INFO", "replication")
		r, _ := replica.Do("INFO", "replication")
		id := infoFields(p)["master_replid"]
		return id != "" && infoFields(r)["master_replid"] == id && infoFields(r)["master_link_status"] == "up"
	})
	eventually(t, 10*time.Second, "the records are back on the replica", func() bool {
		n, _ := replica.Do("LLEN", feedKey("home", "syd"))
		set, _ := replica.Do("HGET", lightKey("home", "syd"), "set")
		return n == "1" && strings.Contains(set, `"on":true`)
	})
	waitReady(t, s)
	snap, _ := s.Snapshot(ctx, "home", AllParts)
	if !snap.Light.On || len(snap.Messages) != 1 {
		t.Fatalf("after the primary's restart: %+v", snap)
	}
}

// An explicit set is honoured by an instance that never read the room: its
// base counts every region's flips, not only its own region's.
func TestRedisSetFromAColdInstance(t *testing.T) {
	node := redisnode.MustStart(t, redisnode.Options{})
	ctx := context.Background()
	ams := openRedis(t, RedisConfig{URL: node.URL(), Region: "ams"})
	if _, err := ams.Switch(ctx, "cold", Switch{By: "U"}); err != nil { // on
		t.Fatal(err)
	}
	syd := openRedis(t, RedisConfig{URL: node.URL(), Region: "syd"})
	off := false
	l, err := syd.Switch(ctx, "cold", Switch{Set: &off, By: "V"})
	if err != nil || l.On {
		t.Fatalf("set off from a cold instance answered %+v, %v", l, err)
	}
	for _, s := range []*Redis{ams, syd} {
		waitSnapshot(t, s, "cold", func(s Snapshot) bool { return !s.Light.On && s.Light.Flips == 1 })
	}
}

// Causal order whatever the clocks say: with one region an hour ahead and
// another an hour behind, a set made after seeing a state wins over it, and
// a message posted after seeing another sorts after it.
func TestRedisCausalOrderWithSkewedClocks(t *testing.T) {
	node := redisnode.MustStart(t, redisnode.Options{})
	ctx := context.Background()
	skewed := func(d time.Duration) func() time.Time { return func() time.Time { return time.Now().Add(d) } }
	ahead := openRedis(t, RedisConfig{URL: node.URL(), Region: "ams", Now: skewed(time.Hour)})
	behind := openRedis(t, RedisConfig{URL: node.URL(), Region: "syd", Now: skewed(-time.Hour)})
	on, off := true, false
	for _, room := range []string{"a", "b"} {
		for _, s := range []*Redis{ahead, behind} {
			_, _ = s.Snapshot(ctx, room, AllParts)
		}
	}

	// Room a: the region ahead sets on; the one behind sees it, then sets off.
	if _, err := ahead.Switch(ctx, "a", Switch{Set: &on, By: "U"}); err != nil {
		t.Fatal(err)
	}
	waitSnapshot(t, behind, "a", func(s Snapshot) bool { return s.Light.On })
	if l, err := behind.Switch(ctx, "a", Switch{Set: &off, By: "V"}); err != nil || l.On {
		t.Fatalf("a set after seeing the other's: %+v, %v", l, err)
	}
	for _, s := range []*Redis{ahead, behind} {
		waitSnapshot(t, s, "a", func(s Snapshot) bool { return !s.Light.On && s.Light.By == "V" })
	}

	// Room b: the same with messages.
	if _, err := ahead.Say(ctx, "b", Post{Text: "first"}); err != nil {
		t.Fatal(err)
	}
	waitSnapshot(t, behind, "b", func(s Snapshot) bool { return len(s.Messages) == 1 })
	if _, err := behind.Say(ctx, "b", Post{Text: "reply"}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Redis{ahead, behind} {
		waitSnapshot(t, s, "b", func(s Snapshot) bool { return len(s.Messages) == 2 && s.Messages[0].Text == "reply" })
		// The skew is not shown as propagation delay.
		for _, l := range s.lat.report(s.now()) {
			if l.MaxMs > maxLatency.Seconds()*1000 {
				t.Fatalf("latency from %s reads %v ms", l.Region, l.MaxMs)
			}
		}
	}
}

// A remote clock beyond the skew limit pulls ours only as far as the limit.
func TestClockObserveIsBounded(t *testing.T) {
	var c Clock
	far := HLC(time.Now().Add(48*time.Hour).UnixMilli()) << hlcLogicalBits
	if !c.Observe(far, time.Hour) {
		t.Fatal("a timestamp two days ahead was not cut")
	}
	if got := c.Now().Time(); got.After(time.Now().Add(61 * time.Minute)) {
		t.Fatalf("the clock followed a wild remote clock to %v", got)
	}
	var d Clock
	near := d.Now() + 5000<<hlcLogicalBits // five seconds ahead
	if d.Observe(near, time.Hour) || d.Now() <= near {
		t.Fatal("a timestamp within the limit must be followed")
	}
}

// Rewriting an instance's tabs never removes them, even for an instant:
// no del reaches the other instances. And a join into a hash that expired
// writes the instance's other tabs back too.
func TestRedisTabRewriteKeepsEveryTab(t *testing.T) {
	node := redisnode.MustStart(t, redisnode.Options{})
	ctx := context.Background()
	a := openRedis(t, RedisConfig{URL: node.URL(), Region: "ams"})
	b := openRedis(t, RedisConfig{URL: node.URL(), Region: "syd"})
	_, _ = b.Snapshot(ctx, "home", AllParts)
	for _, id := range []string{"t1", "t2", "t3"} {
		if err := a.Join(ctx, "home", Tab{ID: id, User: UserID("U" + id), Region: "ams", Since: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	waitTabs(t, b, "home", 3, 5*time.Second)

	var mu sync.Mutex
	least := 3
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // watch what b shows, as its streams would
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			n := tabsIn(b, "home")
			mu.Lock()
			least = min(least, n)
			mu.Unlock()
			time.Sleep(time.Millisecond)
		}
	}()
	for range 20 {
		if err := a.rewriteTabs(ctx, "home"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	close(stop)
	<-done
	if least != 3 {
		t.Fatalf("while a's tabs were rewritten, b showed only %d of 3", least)
	}

	// The hash expires (a stall longer than the TTL); one join follows.
	if _, err := node.Do("DEL", tabsKey("home", a.inst)); err != nil {
		t.Fatal(err)
	}
	if err := a.Join(ctx, "home", Tab{ID: "t4", User: "U4", Region: "ams", Since: time.Now()}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "every tab back in the store", func() bool {
		n, _ := node.Do("HLEN", tabsKey("home", a.inst))
		return n == "5" // four tabs and the sequence
	})
	waitTabs(t, b, "home", 4, 5*time.Second)
}

// The instance that took a write shows it on its own streams at once, even
// with its read replica down (the write went to the primary).
func TestRedisReadYourWritesWithReplicaDown(t *testing.T) {
	primary := redisnode.MustStart(t, redisnode.Options{})
	replica := redisnode.MustStart(t, redisnode.Options{ReplicaOf: primary.Addr()})
	ctx := context.Background()
	s := openRedis(t, RedisConfig{URL: replica.URL(), WriteURL: primary.URL(), Region: "syd"})
	_, _ = s.Snapshot(ctx, "home", AllParts)
	if err := replica.Stop(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "not ready with the replica down", func() bool { return s.Ready(ctx) != nil })
	if _, err := s.Switch(ctx, "home", Switch{By: "U"}); err != nil {
		t.Fatalf("a write to a reachable primary: %v", err)
	}
	if _, err := s.Say(ctx, "home", Post{Text: "mine"}); err != nil {
		t.Fatal(err)
	}
	snap, _ := s.Snapshot(ctx, "home", AllParts)
	if !snap.Light.On || len(snap.Messages) != 1 {
		t.Fatalf("own writes not shown: %+v", snap)
	}
}

// A node that stalls (CLIENT PAUSE) makes the instance not ready, and ready
// again once it answers: a slow INFO is not a lost subscription.
func TestRedisStalledNodeRecovers(t *testing.T) {
	node := redisnode.MustStart(t, redisnode.Options{})
	s := openRedis(t, RedisConfig{URL: node.URL(), Region: "ams"})
	if _, err := node.Do("CLIENT", "PAUSE", "2500"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "not ready during the stall", func() bool { return s.Ready(context.Background()) != nil })
	waitReady(t, s)
}

// While the store is down, writes fail at once with ErrUnavailable rather
// than waiting on reconnection attempts, and Ready says why.
func TestRedisWritesFailFastWhileDown(t *testing.T) {
	node := redisnode.MustStart(t, redisnode.Options{})
	ctx := context.Background()
	s := openRedis(t, RedisConfig{URL: node.URL(), Region: "ams"})
	if err := node.Stop(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "not ready with the store down", func() bool { return s.Ready(ctx) != nil })
	start := time.Now()
	_, err := s.Switch(ctx, "home", Switch{By: "U"})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a switch with the store down: %v", err)
	}
	// Generous for a loaded machine; the point is not waiting out the
	// write timeout.
	if took := time.Since(start); took > writeTimeout/4 {
		t.Fatalf("a switch with the store known down took %v", took)
	}
}

// lowestTabs samples the tabs s shows until stop is closed and returns the
// fewest seen: what its streams would have been shown at worst.
func lowestTabs(s Store, room string, stop <-chan struct{}) <-chan int {
	out := make(chan int, 1)
	go func() {
		least := tabsIn(s, room)
		for {
			select {
			case <-stop:
				out <- least
				return
			case <-time.After(2 * time.Millisecond):
				least = min(least, tabsIn(s, room))
			}
		}
	}()
	return out
}

// An outage or partition longer than the tabs' TTL does not empty the room
// for the instance cut off: it keeps showing what it last read (and its
// own tabs), and after the heal nobody dips while instances re-announce.
// Its peer, which stayed connected, rightly drops the cut-off instance's
// tabs, and gets them back within two seconds of the heal.
func TestRedisOutageLongerThanTheTTL(t *testing.T) {
	node := redisnode.MustStart(t, redisnode.Options{})
	link := linkTo(t, node)
	ctx := context.Background()
	ttl := RedisConfig{TTL: time.Second}
	a, b := ttl, ttl
	a.URL, a.Region = node.URL(), "ams"
	b.URL, b.Region = "redis://"+link.Addr()+"/0", "syd"
	ams, syd := openRedis(t, a), openRedis(t, b)
	for i, s := range []*Redis{ams, syd} {
		if err := s.Join(ctx, "home", Tab{ID: fmt.Sprint("t", i), User: UserID(fmt.Sprint("U", i)), Region: s.cfg.Region, Since: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	waitTabs(t, ams, "home", 2, 5*time.Second)
	waitTabs(t, syd, "home", 2, 5*time.Second)

	// syd cut off for three TTLs.
	stop := make(chan struct{})
	least := lowestTabs(syd, "home", stop)
	link.Cut()
	eventually(t, 3*time.Second, "syd not ready while cut off", func() bool { return syd.Ready(ctx) != nil })
	waitTabs(t, ams, "home", 1, 5*time.Second) // syd's tab expired for ams
	time.Sleep(2 * time.Second)
	link.Restore()
	waitReady(t, syd)
	healed := time.Now()
	waitTabs(t, ams, "home", 2, 2*time.Second)
	t.Logf("ams shows syd's tab again %v after syd is ready", time.Since(healed).Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	close(stop)
	if n := <-least; n != 2 {
		t.Fatalf("syd showed %d tabs at worst during and after its cut, want 2", n)
	}

	// The whole store down for three TTLs, restarted with its data: both
	// keep showing both tabs throughout.
	stop = make(chan struct{})
	lows := []<-chan int{lowestTabs(ams, "home", stop), lowestTabs(syd, "home", stop)}
	if err := node.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if err := node.Restart(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, ams)
	waitReady(t, syd)
	time.Sleep(2 * time.Second)
	close(stop)
	for i, low := range lows {
		if n := <-low; n != 2 {
			t.Fatalf("instance %d showed %d tabs at worst through the outage, want 2", i, n)
		}
	}
}

// An instance subscribes only to the rooms it serves, hears nothing of the
// others, and lets go of a room no local stream asked for in RoomIdle.
func TestRedisSubscribesOnlyToItsRooms(t *testing.T) {
	node := redisnode.MustStart(t, redisnode.Options{})
	ctx := context.Background()
	a := openRedis(t, RedisConfig{URL: node.URL(), Region: "ams", RoomIdle: 2 * time.Second})
	b := openRedis(t, RedisConfig{URL: node.URL(), Region: "syd"})
	_, _ = a.Snapshot(ctx, "x", AllParts)
	for i := range 5 {
		if _, err := b.Say(ctx, "y", Post{Text: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Say(ctx, "x", Post{Text: "for a"}); err != nil {
		t.Fatal(err)
	}
	waitSnapshot(t, a, "x", func(s Snapshot) bool { return len(s.Messages) == 1 })
	subscribers := func(room string) string {
		n, _ := node.Do("PUBSUB", "NUMSUB", roomChannel(room))
		return strings.TrimPrefix(n, roomChannel(room)+"\n")
	}
	if x, y := subscribers("x"), subscribers("y"); x != "1" || y != "0" {
		t.Fatalf("subscribers of x: %s, of y: %s; want 1 and 0", x, y)
	}
	if n := a.StoreEvents()["foreign_announcement"]; n != 0 {
		t.Fatalf("a heard %d announcements of rooms it does not serve", n)
	}
	eventually(t, 10*time.Second, "a lets go of x", func() bool { return subscribers("x") == "0" && !a.tracked("x") })
}

// A room nobody used for the retention period is deleted from the store; a
// room with a live instance's tabs is kept, however old its last write.
func TestRedisRoomRetention(t *testing.T) {
	node := redisnode.MustStart(t, redisnode.Options{})
	ctx := context.Background()
	s := openRedis(t, RedisConfig{URL: node.URL(), Region: "ams", Retention: 2 * time.Second})
	if _, err := s.Say(ctx, "old", Post{Text: "bye"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Join(ctx, "kept", Tab{ID: "t", User: "U", Region: "ams", Since: time.Now()}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the unused room is deleted", func() bool {
		keys, _ := node.Do("KEYS", "gp:old:*")
		return keys == ""
	})
	if n, _ := node.Do("HLEN", tabsKey("kept", s.inst)); n != "2" {
		t.Fatalf("the room in use lost its tabs: %s fields", n)
	}
}

// A black-holed replication link (no FIN: the replica says its link is up
// for a minute) makes the instance reading that replica not ready within
// 3 s, since its own pings stop coming back; ready again once the link is.
func TestRedisBlackHoledLink(t *testing.T) {
	primary := redisnode.MustStart(t, redisnode.Options{})
	link := linkTo(t, primary)
	replica := redisnode.MustStart(t, redisnode.Options{ReplicaOf: link.Addr()})
	ctx := context.Background()
	s := openRedis(t, RedisConfig{URL: replica.URL(), WriteURL: primary.URL(), Region: "syd"})
	link.Stall()
	eventually(t, 3*time.Second, "not ready with the replica's link black-holed", func() bool { return s.Ready(ctx) != nil })
	if info, _ := replica.Do("INFO", "replication"); infoFields(info)["master_link_status"] != "up" {
		t.Logf("the replica noticed the cut by itself: %s", infoFields(info)["master_link_status"])
	}
	link.Restore()
	waitReady(t, s)
}

// More messages than a room shows, posted while a region's replica is cut
// off: once it is back, that region shows exactly what the others show,
// the newest ten, none missing, none twice; and it has every one of them
// (Recent), to show its streams in passing, not only the newest ten.
func TestRedisMessagesPostedWhileCutOff(t *testing.T) {
	primary := redisnode.MustStart(t, redisnode.Options{})
	link := linkTo(t, primary)
	replica := redisnode.MustStart(t, redisnode.Options{ReplicaOf: link.Addr()})
	ctx := context.Background()
	ams := openRedis(t, RedisConfig{URL: primary.URL(), Region: "ams"})
	syd := openRedis(t, RedisConfig{URL: replica.URL(), WriteURL: primary.URL(), Region: "syd"})
	for _, s := range []*Redis{ams, syd} {
		_, _ = s.Snapshot(ctx, "home", AllParts)
	}
	if _, err := syd.Say(ctx, "home", Post{Text: "before"}); err != nil {
		t.Fatal(err)
	}
	waitSnapshot(t, ams, "home", func(s Snapshot) bool { return len(s.Messages) == 1 })
	link.Cut()
	var sent []string
	for i := range 15 {
		m, err := ams.Say(ctx, "home", Post{Text: fmt.Sprint("while cut ", i)})
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, m.ID)
	}
	link.Restore()
	waitReady(t, syd)
	waitSnapshot(t, syd, "home", func(s Snapshot) bool {
		if len(s.Messages) != FeedLen || len(s.Recent) < len(sent) {
			return false
		}
		for i, m := range s.Recent[:len(sent)] { // newest first
			if m.ID != sent[len(sent)-1-i] {
				return false
			}
		}
		return true
	})
}

// Forgetting a thousand rooms at once returns their memory: an idle server
// allocates nothing that would trigger the collection.
func TestRedisForgettingManyRoomsReturnsMemory(t *testing.T) {
	node := redisnode.MustStart(t, redisnode.Options{})
	ctx := context.Background()
	s := openRedis(t, RedisConfig{URL: node.URL(), Region: "ams", RoomIdle: time.Second})
	forced := func() uint64 {
		m := []metrics.Sample{{Name: "/gc/cycles/forced:gc-cycles"}}
		metrics.Read(m)
		return m[0].Value.Uint64()
	}
	for i := range releaseAfter {
		if _, err := s.Snapshot(ctx, fmt.Sprint("room-", i), AllParts); err != nil {
			t.Fatal(err)
		}
	}
	before := forced()
	eventually(t, 20*time.Second, "every room forgotten", func() bool { return s.Rooms() == 0 })
	eventually(t, 10*time.Second, "a collection forced", func() bool { return forced() > before })
}
