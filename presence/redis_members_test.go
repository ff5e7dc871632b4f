package presence

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"globalpresence/internal/redisnode"
)

// waitRooms waits until every store answers want for the rooms API.
func waitRooms(t *testing.T, want string, within time.Duration, stores ...*Redis) time.Duration {
	t.Helper()
	start := time.Now()
	for _, s := range stores {
		for roomsOf(s.Members, "", 100) != want {
			if time.Since(start) > within {
				t.Fatalf("%s answers %s after %v, want %s", s.inst, roomsOf(s.Members, "", 100), within, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return time.Since(start)
}

// Every instance answers the same global membership: distinct users across
// instances and regions. A crashed instance's memberships leave everywhere
// with its TTL; after the store restarts empty, instances write theirs back
// whole (a new instance, which can only read the store, sees them all).
func TestRedisMembership(t *testing.T) {
	node := redisnode.MustStart(t, redisnode.Options{})
	ctx := context.Background()
	cfg := func(region, inst string) RedisConfig {
		return RedisConfig{URL: node.URL(), Region: region, Instance: inst, TTL: 2 * time.Second}
	}
	ams1 := openRedis(t, cfg("ams", "ams-1"))
	ams2, err := NewRedis(cfg("ams", "ams-2")) // crashed below, never closed
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, ams2)
	iad1 := openRedis(t, cfg("iad", "iad-1"))
	all := []*Redis{ams1, ams2, iad1}
	n := 0
	join := func(s *Redis, room string, user UserID) {
		t.Helper()
		n++
		if err := s.Join(ctx, room, Tab{ID: fmt.Sprint("t", n), User: user, Region: s.cfg.Region, Since: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	join(ams1, "r1", "U")
	join(ams1, "r1", "U") // a second tab: still one user
	join(iad1, "r1", "U") // and in iad: one viewer, counted in both regions
	join(ams1, "r1", "V")
	join(ams2, "r1", "V") // two instances of ams: once in ams
	join(ams2, "r2", "W")
	join(iad1, "r2", "X")
	join(iad1, "r3", "X")
	want := "[{r1 2 map[ams:2 iad:1]} {r2 2 map[ams:1 iad:1]} {r3 1 map[iad:1]}]"
	waitRooms(t, want, 5*time.Second, all...)
	for _, s := range all {
		if got := fmt.Sprint(s.UserRooms("X")); got != "[r2 r3]" {
			t.Fatalf("%s: X is in %s, want [r2 r3]", s.inst, got)
		}
	}

	crash(ams2)
	want = "[{r1 2 map[ams:2 iad:1]} {r2 1 map[iad:1]} {r3 1 map[iad:1]}]" // V is still on ams-1
	took := waitRooms(t, want, 10*time.Second, ams1, iad1)
	t.Logf("a crashed instance's memberships left everywhere after %v (TTL 2 s)", took)

	if err := node.Crash(false); err != nil {
		t.Fatal(err)
	}
	waitReady(t, ams1)
	waitReady(t, iad1)
	waitRooms(t, want, 10*time.Second, ams1, iad1)
	fresh := openRedis(t, cfg("syd", "syd-1"))
	waitRooms(t, want, 10*time.Second, fresh)
	if got := fmt.Sprint(fresh.UserRooms("U")); got != "[r1]" {
		t.Fatalf("a new instance finds U in %s, want [r1]", got)
	}

	// Leaving takes effect everywhere; closing takes an instance's
	// memberships with it at once.
	_ = ams1.Leave(ctx, "r1", "t4") // V's tab on ams-1
	waitRooms(t, "[{r1 1 map[ams:1 iad:1]} {r2 1 map[iad:1]} {r3 1 map[iad:1]}]", 5*time.Second, ams1, iad1, fresh)
	if err := iad1.Close(); err != nil {
		t.Fatal(err)
	}
	took = waitRooms(t, "[{r1 1 map[ams:1]}]", 5*time.Second, ams1, fresh)
	t.Logf("a closed instance's memberships left everywhere after %v", took)
}

// A membership delta missed by a receiver shows as a gap at the next one,
// and the receiver re-reads that instance's memberships; with no next one,
// the periodic re-read finds the sequence moved on.
func TestRedisMembershipGap(t *testing.T) {
	node := redisnode.MustStart(t, redisnode.Options{})
	ctx := context.Background()
	a := openRedis(t, RedisConfig{URL: node.URL(), Region: "ams"})
	b := openRedis(t, RedisConfig{URL: node.URL(), Region: "syd", Resync: time.Second})
	if err := a.Join(ctx, "r", Tab{ID: "t1", User: "U", Region: "ams"}); err != nil {
		t.Fatal(err)
	}
	waitRooms(t, "[{r 1 map[ams:1]}]", 5*time.Second, b)
	// A membership added behind every receiver's back, as if its delta
	// had been lost.
	if _, err := node.Do("HSET", membersKey(a.inst), "q:V", "ams", "_seq", "5"); err != nil {
		t.Fatal(err)
	}
	if err := a.Join(ctx, "r", Tab{ID: "t2", User: "W", Region: "ams"}); err != nil {
		t.Fatal(err)
	}
	waitRooms(t, "[{r 2 map[ams:2]} {q 1 map[ams:1]}]", 5*time.Second, b)
	if _, err := node.Do("HSET", membersKey(a.inst), "q:X", "ams", "_seq", "9"); err != nil {
		t.Fatal(err)
	}
	waitRooms(t, "[{q 2 map[ams:2]} {r 2 map[ams:2]}]", 5*time.Second, b)
}

// A membership announcement lacking what its type needs is refused, not
// applied with a guess.
func TestDecodeMemberWire(t *testing.T) {
	for msg, ok := range map[string]bool{
		`{"t":"add","i":"a","r":"home","u":"U","g":"ams","s":1}`: true,
		`{"t":"del","i":"a","r":"home","u":"U","s":2}`:           true,
		`{"t":"all","i":"a","s":3}`:                              true,
		`{"t":"gone","i":"a"}`:                                   true,
		`{"t":"add","i":"a","r":"home","u":"U","s":1}`:           false, // no region
		`{"t":"add","i":"a","r":"a:b","u":"U","g":"ams","s":1}`:  false, // not a room
		`{"t":"del","i":"a","r":"home","u":"U"}`:                 false, // no sequence
		`{"t":"gone"}`:                                           false,
		`{"t":"what","i":"a"}`:                                   false,
		`{"t":"gone","i":"a"} {}`:                                false,
	} {
		if _, err := decodeMemberWire(msg); (err == nil) != ok {
			t.Errorf("%s: err %v, want accepted %v", msg, err, ok)
		}
	}
}

// What the store was told of memberships that ended is forgotten: every
// (room, user) pair ever seen would otherwise stay for the process's life.
func TestRedisMembershipsEndedAreForgotten(t *testing.T) {
	node := redisnode.MustStart(t, redisnode.Options{})
	ctx := context.Background()
	s := openRedis(t, RedisConfig{URL: node.URL(), Region: "ams", Instance: "ams-1", TTL: 2 * time.Second})
	for i := range 200 {
		room, id := fmt.Sprint("r", i%50), fmt.Sprint("t", i)
		if err := s.Join(ctx, room, Tab{ID: id, User: UserID(fmt.Sprint("U", i)), Region: "ams", Since: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := s.Leave(ctx, room, id); err != nil {
			t.Fatal(err)
		}
	}
	waitRooms(t, "[]", 5*time.Second, s)
	s.members.mu.Lock()
	written := len(s.members.written)
	s.members.mu.Unlock()
	s.mu.Lock()
	refs := len(s.members.refs)
	s.mu.Unlock()
	if written != 0 || refs != 0 {
		t.Errorf("after 200 memberships ended, %d are still recorded as written and %d counted", written, refs)
	}
}

// An instance's own joins and leaves come back to it as announcements; it
// keeps its tabs first hand, so the echo adds nothing: no second copy of
// every tab, and no second presence change.
func TestRedisOwnEchoesAreNotKept(t *testing.T) {
	node := redisnode.MustStart(t, redisnode.Options{})
	ctx := context.Background()
	s := openRedis(t, RedisConfig{URL: node.URL(), Region: "ams", Instance: "ams-1"})
	if _, err := s.Snapshot(ctx, "r", AllParts); err != nil { // tracked and subscribed from the start
		t.Fatal(err)
	}
	var changes atomic.Int64
	s.Watch(func(c Change) {
		if c.Room == "r" && c.Parts&PartPresence != 0 {
			changes.Add(1)
		}
	})
	before := s.announced.Load()
	for i := range 20 {
		if err := s.Join(ctx, "r", Tab{ID: fmt.Sprint("t", i), User: UserID(fmt.Sprint("U", i)), Region: "ams", Since: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	// Every announcement heard and handled: none for 300 ms.
	eventually(t, 5*time.Second, "the joins' announcements come back", func() bool { return s.announced.Load() >= before+20 })
	for last := ^uint64(0); last != s.announced.Load(); {
		last = s.announced.Load()
		time.Sleep(300 * time.Millisecond)
	}
	s.mu.Lock()
	kept := s.rooms["r"].insts[s.inst]
	s.mu.Unlock()
	if kept != nil {
		t.Errorf("%d of its own tabs kept again from the announcements", len(kept.tabs))
	}
	if n := changes.Load(); n > 20 {
		t.Errorf("20 joins made %d presence changes", n)
	}
	snap, err := s.Snapshot(ctx, "r", AllParts)
	if err != nil || len(snap.Regions) != 1 || len(snap.Regions[0].Users) != 20 {
		t.Fatalf("the room shows %+v, %v; want its 20 users", snap.Regions, err)
	}
}
