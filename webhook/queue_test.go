package webhook

import (
	"testing"
	"time"
)

// The queue keeps the newest cap events; what was delivered goes even if
// drops moved the head meanwhile; the too old are dropped and counted.
func TestQueue(t *testing.T) {
	q := queue{cap: 3}
	now := time.Now()
	ev := func(id string) Event { return Event{ID: id} }
	if n := q.push([]Event{ev("a"), ev("b")}, now); n != 0 {
		t.Fatalf("dropped %d under the cap", n)
	}
	head, _ := q.head(10, now.Add(-time.Hour))
	q.push([]Event{ev("c")}, now)
	if n := q.push([]Event{ev("d"), ev("e")}, now.Add(time.Minute)); n != 2 {
		t.Fatalf("dropped %d, want the 2 oldest", n)
	}
	q.done(head[len(head)-1].n) // a and b, delivered while dropped
	if q.len() != 3 {
		t.Fatalf("%d queued, want c d e", q.len())
	}
	head, expired := q.head(2, now.Add(time.Second))
	if expired != 1 || len(head) != 2 || head[0].ID != "d" || head[1].ID != "e" {
		t.Fatalf("head %v, %d expired; want d e and c expired", head, expired)
	}
}
