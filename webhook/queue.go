package webhook

import (
	"sync"
	"time"
)

// queued is an event waiting for delivery, numbered in arrival order.
type queued struct {
	Event
	n     uint64
	since time.Time
}

// queue is the sender's one FIFO: bounded, oldest dropped first.
type queue struct {
	mu    sync.Mutex
	cap   int
	items []queued
	next  uint64
}

// push appends events and returns the oldest it dropped to stay within
// the cap.
func (q *queue) push(evs []Event, now time.Time) (dropped []queued) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, e := range evs {
		q.next++
		q.items = append(q.items, queued{e, q.next, now})
	}
	if over := len(q.items) - q.cap; over > 0 {
		dropped = q.items[:over]
		q.items = append(q.items[:0:0], q.items[over:]...) // a fresh array: let the dropped go
	}
	return dropped
}

// head drops the events queued before expired, returning them, and
// returns up to limit of the rest, oldest first.
func (q *queue) head(limit int, expired time.Time) (head, old []queued) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for n < len(q.items) && q.items[n].since.Before(expired) {
		n++
	}
	old, q.items = q.items[:n:n], q.items[n:]
	return append([]queued(nil), q.items[:min(limit, len(q.items))]...), old
}

// done removes the events up to number n, those delivered (some may have
// been dropped meanwhile).
func (q *queue) done(n uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	i := 0
	for i < len(q.items) && q.items[i].n <= n {
		i++
	}
	q.items = q.items[i:]
}

func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}
