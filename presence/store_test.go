package presence

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// storeSuite is run against every Store implementation: the behaviour users
// see must not depend on the backend.
//
// Stores replicate asynchronously, so reads are polled until they converge.
func storeSuite(t *testing.T, open func(t *testing.T, region string) Store) {
	ctx := context.Background()
	on, off := true, false
	run := fmt.Sprint(time.Now().UnixNano()) // rooms are fresh on a reused server
	room := func(name string) string { return name + "-" + run }
	eventually := func(t *testing.T, s Store, r string, ok func(Snapshot) bool) Snapshot {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			snap, err := s.Snapshot(ctx, r, AllParts)
			if err == nil && ok(snap) {
				return snap
			}
			if time.Now().After(deadline) {
				t.Fatalf("room %s never converged; last: %+v, %v", r, snap, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	t.Run("toggle and set", func(t *testing.T) {
		s := open(t, "ams")
		r := room("light")
		l, err := s.Switch(ctx, r, Switch{By: "AAAAAAAA", From: "ams"})
		if err != nil || !l.On || l.By != "AAAAAAAA" || l.Region != "ams" || l.At.IsZero() {
			t.Fatalf("toggle from off: %+v, %v", l, err)
		}
		for _, want := range []bool{true, true, false, false} {
			set := off
			if want {
				set = on
			}
			if l, _ = s.Switch(ctx, r, Switch{Set: &set}); l.On != want {
				t.Fatalf("set %v: got %+v", want, l)
			}
		}
		if l, _ = s.Switch(ctx, r, Switch{}); !l.On {
			t.Fatalf("toggle after set off: %+v", l)
		}
	})

	// Flaw 8 of the original: it read the state and wrote the opposite, so
	// two concurrent flips became one. Every toggle is counted exactly once
	// (the parity alone would pass a store that drops every other flip, or
	// all of them), and a set in between gives the state asked for.
	t.Run("concurrent flips all count", func(t *testing.T) {
		s := open(t, "ams")
		r := room("flips")
		// toggle makes n toggles at once, from a light with before flips in
		// state from, and checks the Light each returns: it counts that
		// toggle (and no more than were made) and is on as those flips make
		// it.
		toggle := func(n int, before uint64, from bool) {
			t.Helper()
			var wg sync.WaitGroup
			var mu sync.Mutex
			var most uint64
			for range n {
				wg.Go(func() {
					l, err := s.Switch(ctx, r, Switch{By: "AAAAAAAA", From: "ams"})
					if err != nil {
						t.Error(err)
						return
					}
					if l.Flips <= before || l.Flips > before+uint64(n) || l.On != (from != ((l.Flips-before)%2 == 1)) {
						t.Errorf("a toggle after %d flips (on: %v) returned %+v: want flips in (%d, %d] and the state they give",
							before, from, l, before, before+uint64(n))
					}
					mu.Lock()
					most = max(most, l.Flips)
					mu.Unlock()
				})
			}
			wg.Wait()
			if most != before+uint64(n) {
				t.Errorf("%d toggles after %d flips: the last one returned %d flips, want %d", n, before, most, before+uint64(n))
			}
		}
		// settled waits for reads to show the light as it must be now.
		settled := func(what string, flips uint64, on bool) {
			t.Helper()
			deadline := time.Now().Add(5 * time.Second)
			for {
				snap, err := s.Snapshot(ctx, r, PartLight)
				if err == nil && snap.Light.Flips == flips && snap.Light.On == on {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: reads show flips %d, on %v (%v); want flips %d, on %v",
						what, snap.Light.Flips, snap.Light.On, err, flips, on)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		set := func(want bool, flips uint64) {
			t.Helper()
			l, err := s.Switch(ctx, r, Switch{Set: &want, By: "BBBBBBBB", From: "ams"})
			if err != nil || l.On != want || l.Flips != flips {
				t.Fatalf("set %v after %d flips: %+v, %v", want, flips, l, err)
			}
			settled(fmt.Sprintf("set %v", want), flips, want)
		}

		toggle(101, 0, false)
		settled("101 concurrent toggles from off", 101, true)
		set(false, 101) // a set is not a flip
		toggle(100, 101, false)
		settled("100 concurrent toggles after a set off", 201, false)
		set(true, 201)
		toggle(1, 201, true)
		settled("a toggle after a set on", 202, false)
	})

	t.Run("feed newest first, capped", func(t *testing.T) {
		s := open(t, "syd")
		r := room("feed")
		for i := range FeedLen + 5 {
			m, err := s.Say(ctx, r, Post{User: "BBBBBBBB", Colour: "teal", From: "syd", Text: fmt.Sprint(i)})
			if err != nil || m.ID == "" || m.Region != "syd" || m.At.IsZero() {
				t.Fatalf("say: %+v, %v", m, err)
			}
		}
		snap := eventually(t, s, r, func(snap Snapshot) bool {
			return len(snap.Messages) == FeedLen && snap.Messages[0].Text == fmt.Sprint(FeedLen+4)
		})
		for i, m := range snap.Messages {
			if want := fmt.Sprint(FeedLen + 4 - i); m.Text != want {
				t.Fatalf("message %d is %q, want %q", i, m.Text, want)
			}
		}
	})

	// Flaw 4 of the original: counts raced and went negative.
	t.Run("tabs join and leave exactly", func(t *testing.T) {
		s := open(t, "ams")
		r := room("tabs")
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Go(func() {
				tab := Tab{ID: fmt.Sprint("t", i), User: UserID(fmt.Sprint("U", i%5)), Colour: "red", Region: "ams", Since: time.Now()}
				if err := s.Join(ctx, r, tab); err != nil {
					t.Error(err)
				}
				if i%2 == 0 {
					_ = s.Leave(ctx, r, tab.ID)
					_ = s.Leave(ctx, r, tab.ID) // twice: must not go negative
				}
			})
		}
		wg.Wait()
		eventually(t, s, r, func(snap Snapshot) bool {
			total := 0
			for _, n := range TabCounts(snap.Regions) {
				total += n
			}
			return total == 25 && len(snap.Regions) == 1 && len(snap.Regions[0].Users) == 5
		}) // 25 tabs of 5 users in one region
		if err := s.Leave(ctx, "nowhere", "nobody"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("watchers hear each part", func(t *testing.T) {
		s := open(t, "ams")
		r := room("watch")
		_, _ = s.Snapshot(ctx, r, AllParts) // a store follows the rooms it is asked about
		var mu sync.Mutex
		got := Part(0)
		s.Watch(func(c Change) {
			if c.Room == r {
				mu.Lock()
				got |= c.Parts
				mu.Unlock()
			}
		})
		_, _ = s.Switch(ctx, r, Switch{})
		_, _ = s.Say(ctx, r, Post{Text: "hi"})
		_ = s.Join(ctx, r, Tab{ID: "x", User: "U", Region: "ams"})
		deadline := time.Now().Add(5 * time.Second)
		for {
			mu.Lock()
			g := got
			mu.Unlock()
			if want := PartLight | PartMessages | PartPresence; g&want == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("heard parts %b, want light, messages and presence", g)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})

	t.Run("a snapshot of some parts has those fresh", func(t *testing.T) {
		s := open(t, "ams")
		r := room("parts")
		_, _ = s.Snapshot(ctx, r, AllParts)
		if _, err := s.Switch(ctx, r, Switch{}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Say(ctx, r, Post{Text: "fresh"}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			light, _ := s.Snapshot(ctx, r, PartLight)
			msgs, _ := s.Snapshot(ctx, r, PartMessages)
			if light.Light.On && len(msgs.Messages) == 1 && msgs.Messages[0].Text == "fresh" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("partial snapshots stale: light %+v, messages %+v", light.Light, msgs.Messages)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	t.Run("empty room", func(t *testing.T) {
		s := open(t, "ams")
		snap, err := s.Snapshot(ctx, room("empty"), AllParts)
		if err != nil || snap.Light.On || snap.Messages == nil || snap.Regions == nil || len(snap.Messages)+len(snap.Regions) != 0 {
			t.Fatalf("empty room: %+v, %v", snap, err)
		}
	})
}

func TestMemoryStore(t *testing.T) {
	storeSuite(t, func(t *testing.T, region string) Store {
		s := NewMemory(region)
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}
