package handlers

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"globalpresence/bus"
	"globalpresence/presence"
	"globalpresence/templates"
)

// groupCounter is the memory store counting the reads that group every tab
// of a room (Snapshot with presence).
type groupCounter struct {
	*presence.Memory
	grouped atomic.Int64
}

func (s *groupCounter) Snapshot(ctx context.Context, room string, parts presence.Part) (presence.Snapshot, error) {
	if parts&presence.PartPresence != 0 {
		s.grouped.Add(1)
	}
	return s.Memory.Snapshot(ctx, room, parts)
}

// roomWithTabs serves a room of the given size through a real Server; with
// a stream attached when watched.
func roomWithTabs(t testing.TB, tabs int, watched bool) (*Server, *groupCounter) {
	t.Helper()
	store := &groupCounter{Memory: presence.NewMemory("ams")}
	tmpl, err := templates.Parse()
	if err != nil {
		t.Fatal(err)
	}
	// The tabs join before the broadcaster watches the store: their
	// changes must not still be re-rendering while the requests run.
	ctx := context.Background()
	for i := range tabs {
		if err := store.Join(ctx, "big", presence.Tab{ID: fmt.Sprint(i), User: presence.UserID(fmt.Sprintf("%032x", i)),
			Colour: "teal", Region: "ams", Since: time.Unix(int64(i), 0)}); err != nil {
			t.Fatal(err)
		}
	}
	b := NewBroadcaster(store, bus.NewEmitter(1<<10), tmpl, BroadcasterConfig{Region: "ams", Coalesce: time.Millisecond, Heartbeat: time.Hour})
	t.Cleanup(b.Close)
	if watched {
		sub, _, err := b.Attach(ctx, "big", "viewer", JSON)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Detach("big", "viewer", JSON, sub) })
	}
	return New(Config{Store: store, Broadcaster: b, Templates: tmpl, Region: "ams"}), store
}

// A room with streams here is served from what the broadcaster holds:
// requests for its page and JSON never group its tabs again; a room with
// none is read from the store.
func TestRoomRequestsServedFromBroadcaster(t *testing.T) {
	for _, watched := range []bool{true, false} {
		s, store := roomWithTabs(t, 300, watched)
		before := store.grouped.Load()
		for _, path := range []string{"/api/rooms/big", "/rooms/big", "/api/rooms/big"} {
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
			if rec.Code != http.StatusOK {
				t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
			}
			if path != "/api/rooms/big" {
				continue
			}
			var st stateView
			if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || len(st.Regions) != 1 || st.Regions[0].Count != 300 {
				t.Fatalf("GET %s (watched %t): %v %+v", path, watched, err, st.Regions)
			}
		}
		grouped := store.grouped.Load() - before
		if watched && grouped != 0 || !watched && grouped != 3 {
			t.Errorf("watched %t: 3 requests grouped the room's tabs %d times", watched, grouped)
		}
	}
}

// What one request for a large room's JSON costs, with a stream in the
// room here (served from the broadcaster) and without (read and grouped).
func BenchmarkRoomState(b *testing.B) {
	for _, watched := range []bool{true, false} {
		b.Run(fmt.Sprintf("tabs=10000/watched=%t", watched), func(b *testing.B) {
			s, _ := roomWithTabs(b, 10000, watched)
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/rooms/big", nil))
				if rec.Code != http.StatusOK {
					b.Fatal(rec.Code)
				}
			}
		})
	}
}
