package handlers

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"globalpresence/bus"
	"globalpresence/presence"
	"globalpresence/templates"
)

// verdictStore is the memory store with a verdict of its own, as the Redis
// store has: Snapshot reports it, and a change of it is told to every room.
// afterRead, if set, runs once just after a read.
type verdictStore struct {
	*presence.Memory
	mu        sync.Mutex
	status    presence.Status
	afterRead func()
	fns       []func(presence.Change)
}

func newVerdictStore() *verdictStore {
	return &verdictStore{Memory: presence.NewMemory("ams"), status: presence.Status{Live: true}}
}

func (s *verdictStore) Watch(fn func(presence.Change)) {
	s.mu.Lock()
	s.fns = append(s.fns, fn)
	s.mu.Unlock()
	s.Memory.Watch(fn)
}

func (s *verdictStore) Snapshot(ctx context.Context, room string, parts presence.Part) (presence.Snapshot, error) {
	snap, err := s.Memory.Snapshot(ctx, room, parts)
	s.mu.Lock()
	snap.Status = s.status
	hook := s.afterRead
	s.afterRead = nil
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
	return snap, err
}

// set changes the verdict and tells every room, as the Redis store does.
func (s *verdictStore) set(st presence.Status) {
	s.mu.Lock()
	s.status = st
	fns := s.fns
	s.mu.Unlock()
	for _, fn := range fns {
		fn(presence.Change{Parts: presence.PartStatus})
	}
}

func newTestBroadcaster(t *testing.T, store presence.Store) *Broadcaster {
	t.Helper()
	tmpl, err := templates.Parse()
	if err != nil {
		t.Fatal(err)
	}
	b := NewBroadcaster(store, bus.NewEmitter(1<<10), tmpl, BroadcasterConfig{Region: "ams", Coalesce: time.Millisecond, Heartbeat: time.Hour})
	t.Cleanup(b.Close)
	return b
}

// nextStatus waits up to 2 s for sub's next status event; nil if none.
func nextStatus(sub *bus.Subscriber) []byte {
	deadline := time.After(2 * time.Second)
	for {
		for _, ev := range sub.Take(nil) {
			if ev.Key == evStatus {
				return ev.Frame
			}
		}
		select {
		case <-sub.Ready():
		case <-sub.Done():
			return nil
		case <-deadline:
			return nil
		}
	}
}

var (
	liveJSON  = bus.Frame(evStatus, []byte(`{"live":true}`))
	lostJSON  = bus.Frame(evStatus, []byte(`{"live":false,"reason":"store node: unreachable"}`))
	lostState = presence.Status{Reason: "store node: unreachable"}
)

// Every new stream's snapshot starts with the status; a change of verdict
// reaches the streams open in every room, in both formats, once.
func TestSnapshotStartsWithStatus(t *testing.T) {
	store := newVerdictStore()
	b := newTestBroadcaster(t, store)
	ctx := context.Background()

	subs := map[Format]*bus.Subscriber{}
	var homeJSON *bus.Subscriber
	for _, room := range []string{"home", "other"} {
		for f := range numFormats {
			sub, snap, err := b.Attach(ctx, room, "ABCDEF01", f)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Detach(room, "ABCDEF01", f, sub)
			if room == "other" {
				subs[f] = sub
			} else if f == JSON {
				homeJSON = sub
			}
			switch {
			case len(snap) == 0:
				t.Fatalf("%s, format %d: empty snapshot", room, f)
			case f == JSON && !bytes.Equal(snap[0], liveJSON):
				t.Fatalf("%s: JSON snapshot starts with %q, want %q", room, snap[0], liveJSON)
			case f == HTML && (!bytes.HasPrefix(snap[0], []byte("event: status\ndata: ")) || !bytes.Contains(snap[0], []byte(`class="live"`))):
				t.Fatalf("%s: HTML snapshot starts with %q, want the live status", room, snap[0])
			}
			sub.Take(nil) // what came with the attach
		}
	}

	store.set(lostState)
	if got := nextStatus(subs[JSON]); !bytes.Equal(got, lostJSON) {
		t.Fatalf("after the store is lost, JSON status %q, want %q", got, lostJSON)
	}
	if got := nextStatus(subs[HTML]); !bytes.Contains(got, []byte("Reconnecting")) || !bytes.Contains(got, []byte(`class="stale"`)) {
		t.Fatalf("after the store is lost, HTML status %q, want the notice", got)
	}
	// Rooms are re-rendered one after the other: wait for home's too.
	if got := nextStatus(homeJSON); !bytes.Equal(got, lostJSON) {
		t.Fatalf("after the store is lost, home's JSON status %q, want %q", got, lostJSON)
	}
	_, snap, err := b.Attach(ctx, "home", "ABCDEF02", JSON)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snap[0], lostJSON) {
		t.Fatalf("a stream opened while the store is lost starts with %q, want %q", snap[0], lostJSON)
	}

	store.set(lostState) // no change of verdict: nothing sent
	store.set(presence.Status{Live: true})
	if got := nextStatus(subs[JSON]); !bytes.Equal(got, liveJSON) {
		t.Fatalf("after the store is back, status %q, want %q", got, liveJSON)
	}
}

// A change of verdict while a room is being read for its first stream is
// not lost: the stream hears it once the room is registered.
func TestStatusChangeWhileARoomWarms(t *testing.T) {
	store := newVerdictStore()
	b := newTestBroadcaster(t, store)
	store.afterRead = func() { store.set(lostState) }
	sub, snap, err := b.Attach(context.Background(), "home", "ABCDEF01", JSON)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Detach("home", "ABCDEF01", JSON, sub)
	// The snapshot has the verdict as read or, if the re-render got there
	// first, the new one; either way the stream ends with the new one.
	last := snap[0]
	if got := nextStatus(sub); got != nil {
		last = got
	}
	if !bytes.Equal(last, lostJSON) {
		t.Fatalf("the verdict changed while the room was read: the stream's last status is %q, want %q", last, lostJSON)
	}
}
