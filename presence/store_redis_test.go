package presence

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"globalpresence/internal/cluster"
	"globalpresence/internal/redisnode"
)

func openRedis(t *testing.T, cfg RedisConfig) *Redis {
	t.Helper()
	if cfg.Instance == "" {
		cfg.Instance = cfg.Region
	}
	s, err := NewRedis(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	waitReady(t, s)
	return s
}

func waitReady(t *testing.T, s Store) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := s.Ready(context.Background())
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("store not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The same suite as the memory store, on one Redis node (KeyDB-style: reads
// and writes to the regional node).
func TestRedisStore(t *testing.T) {
	node := redisnode.MustStart(t, redisnode.Options{})
	storeSuite(t, func(t *testing.T, region string) Store {
		return openRedis(t, RedisConfig{URL: node.URL(), Region: region})
	})
}

// And on a primary with a replica: reads and subscriptions on the replica,
// writes to the primary.
func TestRedisStorePrimaryReplica(t *testing.T) {
	primary := redisnode.MustStart(t, redisnode.Options{})
	replica := redisnode.MustStart(t, redisnode.Options{ReplicaOf: primary.Addr()})
	storeSuite(t, func(t *testing.T, region string) Store {
		return openRedis(t, RedisConfig{URL: replica.URL(), WriteURL: primary.URL(), Region: region})
	})
}

// Flaw 8 across instances: toggles made at once through two instances of
// one region (writing the same region's record) and one of another are all
// counted, once, and every instance reads the same count and state.
func TestRedisConcurrentFlipsAcrossInstances(t *testing.T) {
	node := redisnode.MustStart(t, redisnode.Options{})
	ctx := context.Background()
	stores := []*Redis{
		openRedis(t, RedisConfig{URL: node.URL(), Region: "ams", Instance: "ams-1"}),
		openRedis(t, RedisConfig{URL: node.URL(), Region: "ams", Instance: "ams-2"}),
		openRedis(t, RedisConfig{URL: node.URL(), Region: "iad", Instance: "iad-1"}),
	}
	const each = 33 // 99 toggles in all: the light ends on
	var wg sync.WaitGroup
	for _, s := range stores {
		for range each {
			wg.Go(func() {
				l, err := s.Switch(ctx, "flips", Switch{By: "AAAAAAAA", From: s.cfg.Region})
				if err != nil {
					t.Error(err)
				} else if l.Flips < 1 || l.Flips > each*uint64(len(stores)) || l.On != (l.Flips%2 == 1) {
					t.Errorf("a toggle through %s returned %+v", s.cfg.Region, l)
				}
			})
		}
	}
	wg.Wait()
	for _, s := range stores {
		deadline := time.Now().Add(5 * time.Second)
		for {
			snap, err := s.Snapshot(ctx, "flips", PartLight)
			if err == nil && snap.Light.Flips == each*uint64(len(stores)) && snap.Light.On {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d toggles: %s reads flips %d, on %v (%v); want flips %d, on",
					each*len(stores), s.cfg.Region, snap.Light.Flips, snap.Light.On, err, each*len(stores))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// crash stops a store the way kill -9 would: no goodbye, no more heartbeats.
func crash(s *Redis) {
	s.cancel()
	s.wg.Wait()
	s.read.Close()
	if s.write != s.read {
		s.write.Close()
	}
}

func tabsIn(s Store, room string) int {
	snap, _ := s.Snapshot(context.Background(), room, AllParts)
	n := 0
	for _, c := range TabCounts(snap.Regions) {
		n += c
	}
	return n
}

func waitTabs(t *testing.T, s Store, room string, want int, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for tabsIn(s, room) != want {
		if time.Since(start) > within {
			t.Fatalf("room %s has %d tabs after %v, want %d", room, tabsIn(s, room), within, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// Flaw 5 of the original: a crashed VM's users stayed present forever. Here
// an instance that stops heartbeating leaves everywhere once its TTL runs
// out; one that closes leaves at once.
func TestRedisInstanceCrashAndGoodbye(t *testing.T) {
	node := redisnode.MustStart(t, redisnode.Options{})
	ctx := context.Background()
	cfg := RedisConfig{URL: node.URL(), TTL: 2 * time.Second}
	cfg.Region = "syd"
	watcher := openRedis(t, cfg)
	cfg.Region = "ams"
	doomed, err := NewRedis(cfg)
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, doomed)
	leaving := openRedis(t, cfg)

	_, _ = watcher.Snapshot(ctx, "home", AllParts)
	for i, s := range []*Redis{doomed, leaving} {
		if err := s.Join(ctx, "home", Tab{ID: string(rune('a' + i)), User: "U", Region: "ams", Since: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	waitTabs(t, watcher, "home", 2, 5*time.Second)

	crash(doomed)
	took := waitTabs(t, watcher, "home", 1, 10*time.Second)
	t.Logf("a crashed instance's tab left after %v (TTL 2s)", took)
	if took < time.Second {
		t.Fatalf("tab left after %v, before its TTL could have run out", took)
	}

	if err := leaving.Close(); err != nil {
		t.Fatal(err)
	}
	took = waitTabs(t, watcher, "home", 0, 5*time.Second)
	t.Logf("a closed instance's tab left after %v", took)
}

// Flaws 1 and 2 of the original: a dropped subscription silenced a region,
// and what was missed meanwhile was lost. Here the subscription comes back
// by itself and a full re-read follows.
func TestRedisResubscribesAndResyncs(t *testing.T) {
	node := redisnode.MustStart(t, redisnode.Options{})
	link := linkTo(t, node)
	ctx := context.Background()

	cut := openRedis(t, RedisConfig{URL: "redis://" + link.Addr() + "/0", Region: "syd"})
	writer := openRedis(t, RedisConfig{URL: node.URL(), Region: "ams"})
	_, _ = cut.Snapshot(ctx, "home", AllParts)
	var mu sync.Mutex
	var heard []Change
	cut.Watch(func(c Change) {
		mu.Lock()
		heard = append(heard, c)
		mu.Unlock()
	})
	before := cut.Resyncs()

	link.Cut()
	if err := writer.Join(ctx, "home", Tab{ID: "t1", User: "U", Region: "ams", Since: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := writer.Switch(ctx, "home", Switch{By: "U", From: "ams"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	link.Restore()

	deadline := time.Now().Add(10 * time.Second)
	for {
		snap, _ := cut.Snapshot(ctx, "home", AllParts)
		if snap.Light.On && tabsIn(cut, "home") == 1 && cut.Resyncs() > before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the link came back: light %v, %d tabs, resyncs %d→%d", snap.Light.On, tabsIn(cut, "home"), before, cut.Resyncs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitReady(t, cut)
	mu.Lock()
	defer mu.Unlock()
	if len(heard) == 0 {
		t.Fatal("watchers were not told to re-render after the resync")
	}
}

// A receiver that misses a delta notices the gap at the next one (or the
// next heartbeat) and re-reads that instance, instead of drifting.
func TestRedisSequenceGapTriggersReread(t *testing.T) {
	node := redisnode.MustStart(t, redisnode.Options{})
	ctx := context.Background()
	a := openRedis(t, RedisConfig{URL: node.URL(), Region: "ams"})
	b := openRedis(t, RedisConfig{URL: node.URL(), Region: "syd"})
	_, _ = b.Snapshot(ctx, "home", AllParts)
	if err := a.Join(ctx, "home", Tab{ID: "t1", User: "U", Region: "ams", Since: time.Now()}); err != nil {
		t.Fatal(err)
	}
	waitTabs(t, b, "home", 1, 5*time.Second)
	// A tab added behind every receiver's back, with the sequence moved on,
	// as if its delta had been lost.
	tab := `{"id":"t2","user":"V","colour":"red","region":"ams","since":"2026-01-01T00:00:00Z"}`
	if _, err := node.Do("HSET", tabsKey("home", a.inst), "t2", tab, "_seq", "2"); err != nil {
		t.Fatal(err)
	}
	if err := a.Join(ctx, "home", Tab{ID: "t3", User: "W", Region: "ams", Since: time.Now()}); err != nil {
		t.Fatal(err)
	}
	waitTabs(t, b, "home", 3, 5*time.Second)
}

// Managed Redis may refuse CONFIG: the store says exactly which setting to
// add, and works when the server's configuration has it.
func TestRedisConfigRefused(t *testing.T) {
	node := redisnode.MustStart(t, redisnode.Options{ExtraConfig: []string{
		`rename-command CONFIG ""`, "notify-keyspace-events Kgx",
	}})
	var logs cluster.LogBuffer // the stores' goroutines log while the test reads
	log := slog.New(slog.NewTextHandler(&logs, nil))
	s := openRedis(t, RedisConfig{URL: node.URL(), Region: "ams", Log: log})
	if !strings.Contains(logs.String(), "notify-keyspace-events Kgx") {
		t.Fatalf("no log naming the setting: %s", logs.String())
	}
	ctx := context.Background()
	other := openRedis(t, RedisConfig{URL: node.URL(), Region: "syd", Log: log, TTL: time.Second})
	_, _ = s.Snapshot(ctx, "home", AllParts)
	if err := other.Join(ctx, "home", Tab{ID: "x", User: "U", Region: "syd", Since: time.Now()}); err != nil {
		t.Fatal(err)
	}
	waitTabs(t, s, "home", 1, 5*time.Second)
	crash(other)
	waitTabs(t, s, "home", 0, 5*time.Second) // expiry still seen through the configured events
}

// The store being down never stops the app: reads serve the last state,
// writes fail with ErrUnavailable, Ready says why, and all recovers.
func TestRedisStoreDownAndBack(t *testing.T) {
	node := redisnode.MustStart(t, redisnode.Options{})
	ctx := context.Background()
	s := openRedis(t, RedisConfig{URL: node.URL(), Region: "ams"})
	if _, err := s.Say(ctx, "home", Post{Text: "before"}); err != nil {
		t.Fatal(err)
	}
	snap, _ := s.Snapshot(ctx, "home", AllParts)
	if len(snap.Messages) != 1 {
		t.Fatalf("messages: %+v", snap.Messages)
	}
	if err := node.Stop(); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err := s.Say(wctx, "home", Post{Text: "during"})
	cancel()
	if err == nil {
		t.Fatal("a write while the store is down succeeded")
	}
	if err := s.Ready(ctx); err == nil {
		t.Fatal("ready while the store is down")
	}
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	snap, err = s.Snapshot(rctx, "home", AllParts)
	cancel()
	if err != nil || len(snap.Messages) != 1 {
		t.Fatalf("while down, the last state must be served: %+v, %v", snap.Messages, err)
	}
	if err := node.Restart(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, s)
	if _, err := s.Say(ctx, "home", Post{Text: "after"}); err != nil {
		t.Fatal(err)
	}
}

// A join or a leave costs one command (one script call) whatever the size
// of the room; a user's first or last tab in the room one more (tab.lua on its memberships).
func TestRedisJoinLeaveCost(t *testing.T) {
	node := redisnode.MustStart(t, redisnode.Options{})
	ctx := context.Background()
	s := openRedis(t, RedisConfig{URL: node.URL(), Region: "ams", TTL: time.Hour})
	scripts := func() int { return commandCalls(t, node, "evalsha", "eval") }
	for _, size := range []int{0, 1000} {
		room := fmt.Sprint("cost", size)
		for i := range size {
			_ = s.Join(ctx, room, Tab{ID: fmt.Sprint("bg", i), User: "B", Region: "ams"})
		}
		_ = s.Join(ctx, room, Tab{ID: "stays", User: "U", Region: "ams"})
		for user, most := range map[UserID]float64{"U": 1, "V": 2} {
			before := scripts()
			for i := range 100 {
				id := fmt.Sprint("t", i)
				_ = s.Join(ctx, room, Tab{ID: id, User: user, Region: "ams"})
				_ = s.Leave(ctx, room, id)
			}
			// (A script's first call may be answered NOSCRIPT and sent again.)
			if per := float64(scripts()-before) / 200; per > most+0.05 {
				t.Fatalf("a join or leave of %s in a room of %d tabs cost %.2f script calls, want %v", user, size, per, most)
			}
		}
	}
}

// commandCalls is how many times node has run the given commands.
func commandCalls(t *testing.T, node *redisnode.Node, cmds ...string) int {
	t.Helper()
	info, err := node.Do("INFO", "commandstats")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(info, "\n") {
		for _, cmd := range cmds {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":calls="); ok {
				var c int
				_, _ = fmt.Sscanf(rest, "%d", &c)
				n += c
			}
		}
	}
	return n
}

// idle waits until the store's worker has done everything queued so far.
func idle(s *Redis) {
	done := make(chan struct{})
	s.work <- func() { close(done) }
	<-done
}

// A switch or a message from another region reaches a watching instance
// with its data: the watcher serves it without reading the store (one hop,
// not two, on the cross-region path). A key deleted behind the app's back
// is written back.
func TestRedisChangesArriveWithoutReads(t *testing.T) {
	primary := redisnode.MustStart(t, redisnode.Options{})
	replica := redisnode.MustStart(t, redisnode.Options{ReplicaOf: primary.Addr()})
	ctx := context.Background()
	writer := openRedis(t, RedisConfig{URL: primary.URL(), Region: "ams", Resync: time.Second})
	watcher := openRedis(t, RedisConfig{URL: replica.URL(), WriteURL: primary.URL(), Region: "syd", Resync: time.Hour})
	_, _ = writer.Snapshot(ctx, "r", AllParts) // the writer serves the room too
	if _, err := writer.Say(ctx, "r", Post{Text: "before"}); err != nil {
		t.Fatal(err)
	}
	// The replica may not have the message yet; then its announcement adds it.
	waitSnapshot(t, watcher, "r", func(s Snapshot) bool { return len(s.Messages) == 1 })
	idle(watcher)
	reads := func() int { return commandCalls(t, replica, "hgetall", "lrange", "scan", "get", "hget") }
	before := reads()

	if _, err := writer.Say(ctx, "r", Post{Text: "after"}); err != nil {
		t.Fatal(err)
	}
	on := true
	if _, err := writer.Switch(ctx, "r", Switch{Set: &on, By: "U", From: "ams"}); err != nil {
		t.Fatal(err)
	}
	waitSnapshot(t, watcher, "r", func(s Snapshot) bool {
		return s.Light.On && s.Light.By == "U" && len(s.Messages) == 2 && s.Messages[0].Text == "after"
	})
	if n := reads() - before; n != 0 {
		t.Fatalf("the watcher read the store %d times for two announced changes", n)
	}

	// A feed deleted behind the app's back is written back from the
	// instances' memory at the next re-read: nothing acknowledged is lost.
	if _, err := primary.Do("DEL", feedKey("r", "ams")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for n, _ := primary.Do("LLEN", feedKey("r", "ams")); n != "2"; n, _ = primary.Do("LLEN", feedKey("r", "ams")) {
		if time.Now().After(deadline) {
			t.Fatalf("the deleted feed was not written back: %s messages", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitSnapshot(t, watcher, "r", func(s Snapshot) bool { return len(s.Messages) == 2 && s.Light.On })
}

func waitSnapshot(t *testing.T, s Store, room string, ok func(Snapshot) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		snap, err := s.Snapshot(context.Background(), room, AllParts)
		if err == nil && ok(snap) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("snapshot of %s never as expected: %+v (%v)", room, snap, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A write is retried once when its connection fails (the store restarted
// under a pooled connection), so a retry must never apply twice, even after
// other writes ran in between: a flip retried after another flip is still
// two flips, not three (one user's click cancelled), and a message retried
// after another is stored once.
func TestRedisWriteScriptsSurviveARetry(t *testing.T) {
	node := redisnode.MustStart(t, redisnode.Options{})
	ctx := context.Background()
	s := openRedis(t, RedisConfig{URL: node.URL(), Region: "ams"})
	flip := func(op string) {
		t.Helper()
		stamp, _ := json.Marshal(Stamp{HLC: s.clock.Now(), By: "U"})
		if _, _, err := s.runSwitch(ctx, "r", "flip", op, s.clock.Now(), string(stamp), ""); err != nil {
			t.Fatal(err)
		}
	}
	flip("op-a")
	flip("op-b")
	flip("op-a") // the retry of a, after b
	if n, err := node.Do("HGET", lightKey("r", "ams"), "flips"); err != nil || n != "2" {
		t.Fatalf("flips after two flips, one retried: %s, %v", n, err)
	}

	say := func(m Message) {
		t.Helper()
		if err := s.say(ctx, "r", m); err != nil {
			t.Fatal(err)
		}
	}
	first := NewMessage(s.clock.Now(), "ams", Post{Text: "one"})
	say(first)
	say(NewMessage(s.clock.Now(), "ams", Post{Text: "two"}))
	say(first) // the retry of the first, after the second
	if n, err := node.Do("LLEN", feedKey("r", "ams")); err != nil || n != "2" {
		t.Fatalf("feed length after two messages, one retried: %s, %v", n, err)
	}
}

// Rooms first asked for at once, as after a restart, each get their own
// tabs, feed and lightbulb.
func TestRedisRoomsFirstReadAtOnceKeepTheirOwn(t *testing.T) {
	node := redisnode.MustStart(t, redisnode.Options{})
	ctx := context.Background()
	writer := openRedis(t, RedisConfig{URL: node.URL(), Region: "ams"})
	const rooms = 60
	on := true
	for i := range rooms {
		room := fmt.Sprint("shop/", i)
		for j := range i % 4 {
			if err := writer.Join(ctx, room, Tab{ID: fmt.Sprint("t", j), User: UserID(fmt.Sprint("U", j)), Region: "ams", Since: time.Now()}); err != nil {
				t.Fatal(err)
			}
		}
		if i%2 == 0 {
			if _, err := writer.Say(ctx, room, Post{User: "U0", Text: "hi " + room}); err != nil {
				t.Fatal(err)
			}
		}
		if i%3 == 0 {
			if _, err := writer.Switch(ctx, room, Switch{Set: &on, By: "U0", From: "ams"}); err != nil {
				t.Fatal(err)
			}
		}
	}

	reader := openRedis(t, RedisConfig{URL: node.URL(), Region: "syd"})
	snaps := make([]Snapshot, rooms)
	errs := make([]error, rooms)
	var wg sync.WaitGroup
	for i := range rooms {
		wg.Go(func() { snaps[i], errs[i] = reader.Snapshot(ctx, fmt.Sprint("shop/", i), AllParts) })
	}
	wg.Wait()
	for i, snap := range snaps {
		room := fmt.Sprint("shop/", i)
		if errs[i] != nil {
			t.Fatalf("%s: %v", room, errs[i])
		}
		tabs := 0
		for _, n := range TabCounts(snap.Regions) {
			tabs += n
		}
		msgs := len(snap.Messages) == 1 && snap.Messages[0].Text == "hi "+room
		if tabs != i%4 || msgs != (i%2 == 0) || (i%2 != 0 && len(snap.Messages) != 0) || snap.Light.On != (i%3 == 0) {
			t.Errorf("%s: %d tabs, messages %+v, light on %v; want %d tabs, a message %v, light on %v",
				room, tabs, snap.Messages, snap.Light.On, i%4, i%2 == 0, i%3 == 0)
		}
	}
}
