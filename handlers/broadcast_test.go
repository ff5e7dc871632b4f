package handlers

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"globalpresence/bus"
	"globalpresence/presence"
	"globalpresence/templates"
)

// Opening and closing streams of an empty room concurrently must leave every
// still-open stream counted on the room state registered in b.rooms, so it
// keeps hearing the room's changes; and the room is forgotten only when the
// last of them closes.
func TestAttachDetachEmptyRoomRace(t *testing.T) {
	tmpl, err := templates.Parse()
	if err != nil {
		t.Fatal(err)
	}
	store := presence.NewMemory("ams")
	em := bus.NewEmitter(1 << 12)
	b := NewBroadcaster(store, em, tmpl, BroadcasterConfig{Region: "ams", Coalesce: time.Millisecond, Heartbeat: time.Hour})
	defer b.Close()
	ctx := context.Background()

	const rounds, workers, iters = 12, 64, 150
	for round := range rounds {
		room := fmt.Sprintf("race-%d", round)
		// Which workers keep their last stream open varies by round; every
		// fourth round keeps none.
		keeps := func(w int) bool { return round%4 != 3 && w%(round%4+2) == 0 }
		kept := make([]*bus.Subscriber, workers)
		var wg sync.WaitGroup
		for w := range workers {
			user := presence.UserID(fmt.Sprintf("%08X", w))
			wg.Go(func() {
				for i := range iters {
					sub, _, err := b.Attach(ctx, room, user, Format(i%int(numFormats)))
					if err != nil {
						t.Error(err)
						return
					}
					if i == iters-1 && keeps(w) {
						kept[w] = sub
						return
					}
					b.Detach(room, user, sub)
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}

		open := 0
		for _, sub := range kept {
			if sub != nil {
				open++
			}
		}
		b.mu.Lock()
		rs := b.rooms[room]
		var conns int
		var users map[presence.UserID]int
		if rs != nil {
			conns = rs.conns
			users = make(map[presence.UserID]int, len(rs.users))
			for u, us := range rs.users {
				users[u] = us.conns
			}
		}
		b.mu.Unlock()
		switch {
		case open == 0 && rs != nil:
			t.Fatalf("round %d: no streams open, but the room is registered with %d conns", round, conns)
		case open > 0 && rs == nil:
			t.Fatalf("round %d: %d streams open, but the room is not registered", round, open)
		case conns != open:
			t.Fatalf("round %d: registered room counts %d conns, %d streams are open", round, conns, open)
		}
		for w, sub := range kept {
			if user := presence.UserID(fmt.Sprintf("%08X", w)); sub != nil && users[user] != 1 {
				t.Fatalf("round %d: user %s has one stream open, registered room counts %d", round, user, users[user])
			}
		}

		// A change to the room reaches every open stream.
		for _, sub := range kept {
			if sub != nil {
				sub.Take(nil) // what came before the change
			}
		}
		text := fmt.Sprintf("hello round %d", round)
		if _, err := store.Say(ctx, room, presence.Post{User: "ABCDEF01", Colour: "red", From: "ams", Text: text}); err != nil {
			t.Fatal(err)
		}
		deadline := time.After(5 * time.Second)
		for w, sub := range kept {
			if sub != nil && !receives(sub, text, deadline) {
				t.Fatalf("round %d: worker %d's open stream did not get the new message", round, w)
			}
		}

		for w, sub := range kept {
			if sub != nil {
				b.Detach(room, presence.UserID(fmt.Sprintf("%08X", w)), sub)
			}
		}
		b.mu.Lock()
		rs, conns = b.rooms[room], 0
		if rs != nil {
			conns = rs.conns
		}
		b.mu.Unlock()
		if rs != nil {
			t.Fatalf("round %d: all streams closed, but the room is registered with %d conns", round, conns)
		}
	}
}

// receives waits until sub gets a messages event containing text.
func receives(sub *bus.Subscriber, text string, deadline <-chan time.Time) bool {
	for {
		for _, ev := range sub.Take(nil) {
			if ev.Key == evMessages && bytes.Contains(ev.Frame, []byte(text)) {
				return true
			}
		}
		select {
		case <-sub.Ready():
		case <-sub.Done():
			return false
		case <-deadline:
			return false
		}
	}
}

// A stream attached but not yet joined is still one of its user's tabs: a
// presence re-render in between (another user joining) does not tell it
// "0 tabs".
func TestAttachedStreamCountsBeforeItJoins(t *testing.T) {
	store := presence.NewMemory("ams")
	b := newTestBroadcaster(t, store)
	ctx := context.Background()
	sub, snap, err := b.Attach(ctx, "home", "U", JSON)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Detach("home", "U", sub) })
	if tabs := string(snap[len(snap)-1]); !strings.Contains(tabs, `"tabs":1`) {
		t.Fatalf("an attached stream starts with %q", tabs)
	}
	_ = sub.Take(nil)
	if err := store.Join(ctx, "home", presence.Tab{ID: "v", User: "V", Region: "ams"}); err != nil {
		t.Fatal(err)
	}
	b.flush("home", presence.PartPresence)
	for _, ev := range sub.Take(nil) {
		if ev.Key == evTabs && strings.Contains(string(ev.Frame), `"tabs":0`) {
			t.Fatalf("an attached stream was told %q", ev.Frame)
		}
	}
}
