package bus

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestNotifyOnFirstPending(t *testing.T) {
	e := NewEmitter(0)
	var calls atomic.Int32
	s := e.SubscribeFunc(func() { calls.Add(1) }, "t")
	defer s.Close()
	e.Publish("t", ev("", "1"))
	e.Publish("t", ev("", "2")) // queue already non-empty: no second call
	if n := calls.Load(); n != 1 {
		t.Fatalf("notify called %d times for one empty-to-non-empty change, want 1", n)
	}
	if got := s.Take(nil); len(got) != 2 {
		t.Fatalf("Take = %q", frames(got))
	}
	e.Publish("t", ev("k", "3"))
	e.Publish("t", ev("k", "4")) // merged
	if n := calls.Load(); n != 2 {
		t.Fatalf("notify called %d times after a Take and two publishes, want 2", n)
	}
	s.Close()
	e.Publish("t", ev("", "5"))
	if n := calls.Load(); n != 2 {
		t.Fatalf("notify called after Close (%d calls)", n)
	}
}

func TestNotifyOnEviction(t *testing.T) {
	e := NewEmitter(2)
	var calls atomic.Int32
	var s *Subscriber
	s = e.SubscribeFunc(func() {
		calls.Add(1)
		// It may look at the subscriber: no lock is held.
		_ = s.Evicted()
	}, "t")
	e.Publish("t", ev("", "1"))
	e.Publish("t", ev("", "2"))
	e.Publish("t", ev("", "3")) // overflows
	if !s.Evicted() {
		t.Fatal("not evicted")
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("notify called %d times (first event, eviction), want 2", n)
	}
	if e.Subscribers("t") != 0 {
		t.Fatal("evicted subscriber still linked")
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("Done, made after the eviction, is not closed")
	}
}

func TestSetNotify(t *testing.T) {
	e := NewEmitter(0)
	s := e.Subscribe("t")
	defer s.Close()
	e.Publish("t", ev("", "before"))
	var calls atomic.Int32
	s.SetNotify(func() { calls.Add(1) })
	if calls.Load() != 1 {
		t.Fatal("SetNotify did not report events already pending")
	}
	s.Take(nil)
	e.Publish("t", ev("", "after"))
	if calls.Load() != 2 {
		t.Fatalf("notify calls = %d, want 2", calls.Load())
	}

	gone := e.Subscribe("t")
	gone.Close()
	var called bool
	gone.SetNotify(func() { called = true })
	if !called {
		t.Fatal("SetNotify on a closed subscriber did not call notify")
	}
}

// Ready and Done, made on demand, still report what happened before.
func TestLazyChannels(t *testing.T) {
	e := NewEmitter(0)
	s := e.Subscribe("t")
	e.Publish("t", ev("", "x"))
	if !isClosed(s.Ready()) {
		t.Fatal("Ready made after a publish is not signalled")
	}
	s.Take(nil)
	if isClosed(s.Ready()) {
		t.Fatal("Ready still signalled after Take")
	}
	s.Close()
	if !isClosed(s.Done()) {
		t.Fatal("Done made after Close is not closed")
	}
	notified := e.SubscribeFunc(func() {}, "t")
	defer notified.Close()
	if notified.ready != nil || notified.done != nil {
		t.Fatal("a callback subscriber allocated channels")
	}
}

// A callback-driven consumer, as the hub is: notify only schedules, another
// goroutine takes. Every event arrives, in order, with no lost wake-up.
func TestNotifyDrivenConsumer(t *testing.T) {
	const subs, total = 20, 2000
	e := NewEmitter(total)
	var wg sync.WaitGroup
	for range subs {
		kick := make(chan struct{}, 1)
		s := e.SubscribeFunc(func() {
			select {
			case kick <- struct{}{}:
			default:
			}
		}, "t")
		wg.Go(func() {
			defer s.Close()
			var got []Event
			next := 0
			deadline := time.After(10 * time.Second)
			for next < total {
				select {
				case <-kick:
				case <-deadline:
					t.Errorf("got %d of %d events", next, total)
					return
				}
				got = s.Take(got[:0])
				for _, g := range got {
					if want := fmt.Sprintf("data: %d\n\n", next); string(g.Frame) != want {
						t.Errorf("event %d = %q, want %q", next, g.Frame, want)
						return
					}
					next++
				}
			}
		})
	}
	var pub sync.WaitGroup
	pub.Go(func() {
		for i := range total {
			e.Publish("t", ev("", fmt.Sprint(i)))
		}
	})
	pub.Wait()
	wg.Wait()
}
