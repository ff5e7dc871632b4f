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
	if d := q.push([]Event{ev("a"), ev("b")}, now); len(d) != 0 {
		t.Fatalf("dropped %v under the cap", d)
	}
	head, _ := q.head(10, now.Add(-time.Hour))
	q.push([]Event{ev("c")}, now)
	if d := q.push([]Event{ev("d"), ev("e")}, now.Add(time.Minute)); len(d) != 2 || d[0].ID != "a" || d[1].ID != "b" {
		t.Fatalf("dropped %v, want the 2 oldest", d)
	}
	q.done(head[len(head)-1].n) // a and b, delivered while dropped
	if q.len() != 3 {
		t.Fatalf("%d queued, want c d e", q.len())
	}
	head, expired := q.head(2, now.Add(time.Second))
	if len(expired) != 1 || expired[0].ID != "c" || len(head) != 2 || head[0].ID != "d" || head[1].ID != "e" {
		t.Fatalf("head %v, expired %v; want d e, and c expired", head, expired)
	}
}
