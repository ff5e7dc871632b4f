package presence

import (
	"sync"
	"testing"
	"time"
)

type flushLog struct {
	mu     sync.Mutex
	events []flushWork
	times  []time.Time
}

func (l *flushLog) flush(room string, parts Part) {
	l.mu.Lock()
	l.events = append(l.events, flushWork{room, parts})
	l.times = append(l.times, time.Now())
	l.mu.Unlock()
}

func (l *flushLog) snapshot() ([]flushWork, []time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]flushWork(nil), l.events...), append([]time.Time(nil), l.times...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Churn of presence reaches a room at most once per interval, and the last
// change is never lost.
func TestCoalescerBoundsPresenceFlushes(t *testing.T) {
	var log flushLog
	const interval = 100 * time.Millisecond
	c := NewCoalescer(interval, log.flush)
	defer c.Stop()

	start := time.Now()
	for time.Since(start) < 500*time.Millisecond {
		c.Add(Change{Room: "r", Parts: PartPresence})
		time.Sleep(time.Millisecond)
	}
	waitFor(t, "trailing flush", func() bool {
		ev, ts := log.snapshot()
		return len(ev) > 0 && ts[len(ts)-1].After(start.Add(500*time.Millisecond))
	})
	ev, ts := log.snapshot()
	// ~500 changes over 500 ms: at most one flush per interval (plus edges).
	if len(ev) > 8 {
		t.Fatalf("%d presence flushes for 500 ms of churn at a %v interval", len(ev), interval)
	}
	for i := 1; i < len(ts); i++ {
		if gap := ts[i].Sub(ts[i-1]); gap < interval-10*time.Millisecond {
			t.Fatalf("flushes %d and %d only %v apart", i-1, i, gap)
		}
	}
}

// A quiet room's first change goes at once, and other parts are never held
// back behind presence.
func TestCoalescerLeadingEdge(t *testing.T) {
	var log flushLog
	c := NewCoalescer(time.Hour, log.flush)
	defer c.Stop()

	c.Add(Change{Room: "r", Parts: PartPresence})
	waitFor(t, "first presence flush", func() bool { ev, _ := log.snapshot(); return len(ev) == 1 })
	c.Add(Change{Room: "r", Parts: PartPresence | PartLight})
	waitFor(t, "light flush", func() bool { ev, _ := log.snapshot(); return len(ev) == 2 })
	ev, _ := log.snapshot()
	if ev[0] != (flushWork{"r", PartPresence}) || ev[1] != (flushWork{"r", PartLight}) {
		t.Fatalf("flushes: %+v", ev)
	}
	c.Add(Change{Room: "other", Parts: PartPresence})
	waitFor(t, "other room", func() bool { ev, _ := log.snapshot(); return len(ev) == 3 })
}
