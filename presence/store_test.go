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

	// Flaw 8 of the original: two concurrent flips became one.
	t.Run("concurrent flips all count", func(t *testing.T) {
		s := open(t, "ams")
		r := room("flips")
		var wg sync.WaitGroup
		for range 101 {
			wg.Go(func() {
				if _, err := s.Switch(ctx, r, Switch{}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		eventually(t, s, r, func(snap Snapshot) bool { return snap.Light.On }) // 101 flips from off
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
