package bus

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"
)

func ev(key, data string) Event { return Event{Key: key, Frame: Frame("", []byte(data))} }

func frames(evs []Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Key + "=" + string(e.Frame)
	}
	return out
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func TestFanOut(t *testing.T) {
	e := NewEmitter(0)
	a, b, c := e.Subscribe("room"), e.Subscribe("room"), e.Subscribe("room", "user")
	defer a.Close()
	defer b.Close()
	defer c.Close()

	if n := e.Publish("room", ev("", "1")); n != 3 {
		t.Fatalf("Publish room reached %d, want 3", n)
	}
	if n := e.Publish("user", ev("", "2")); n != 1 {
		t.Fatalf("Publish user reached %d, want 1", n)
	}
	if n := e.Publish("nobody", ev("", "3")); n != 0 {
		t.Fatalf("Publish nobody reached %d, want 0", n)
	}
	for _, s := range []*Subscriber{a, b, c} {
		if !isClosed(s.Ready()) {
			t.Error("Ready not signalled")
		}
	}
	if got := a.Take(nil); len(got) != 1 || string(got[0].Frame) != "data: 1\n\n" {
		t.Errorf("a got %q", frames(got))
	}
	if got := c.Take(nil); len(got) != 2 || string(got[1].Frame) != "data: 2\n\n" {
		t.Errorf("c got %q", frames(got))
	}
	if got := c.Take(nil); len(got) != 0 {
		t.Errorf("second Take got %q", frames(got))
	}
	if isClosed(c.Ready()) {
		t.Error("Ready still signalled after Take emptied the queue")
	}
	if s := e.Stats(); s.Published != 3 || s.Delivered != 4 {
		t.Errorf("Stats = %+v", s)
	}
	if e.Subscribers("room") != 3 || e.Subscribers("user") != 1 {
		t.Errorf("Subscribers room=%d user=%d", e.Subscribers("room"), e.Subscribers("user"))
	}
}

func TestDuplicateTopic(t *testing.T) {
	e := NewEmitter(0)
	s := e.Subscribe("t", "t")
	if n := e.Publish("t", ev("", "x")); n != 1 {
		t.Errorf("Publish reached %d, want 1", n)
	}
	s.Close()
	if len(e.topics) != 0 {
		t.Errorf("topics left: %v", e.topics)
	}
}

func TestCoalesce(t *testing.T) {
	e := NewEmitter(0)
	s := e.Subscribe("t")
	defer s.Close()
	e.Publish("t", ev("a", "v1"))
	e.Publish("t", ev("b", "b"))
	e.Publish("t", ev("a", "v2"))
	e.Publish("t", ev("", "x"))
	e.Publish("t", ev("", "x"))

	got := frames(s.Take(nil))
	want := []string{"a=data: v2\n\n", "b=data: b\n\n", "=data: x\n\n", "=data: x\n\n"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Take = %q, want %q", got, want)
	}
	if st := e.Stats(); st.Coalesced != 1 || st.Delivered != 5 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestCoalesceAtCapacity(t *testing.T) {
	e := NewEmitter(2)
	s := e.Subscribe("t")
	defer s.Close()
	e.Publish("t", ev("a", "1"))
	e.Publish("t", ev("b", "1"))
	for range 10 { // a full queue still absorbs updates to pending keys
		e.Publish("t", ev("a", "2"))
	}
	if s.Evicted() {
		t.Fatal("evicted by a coalesced event")
	}
	e.Publish("t", ev("c", "1"))
	if !s.Evicted() || !isClosed(s.Done()) {
		t.Fatal("not evicted by a new key on a full queue")
	}
}

func TestSlowSubscriberEvicted(t *testing.T) {
	const queueLen, total = 8, 100
	e := NewEmitter(queueLen)
	slow := e.Subscribe("t")
	fast := e.Subscribe("t")
	defer fast.Close()

	received := make(chan int)
	go func() {
		n := 0
		var buf []Event
		for n < total {
			<-fast.Ready()
			buf = fast.Take(buf[:0])
			n += len(buf)
		}
		received <- n
	}()

	published := make(chan struct{})
	go func() {
		defer close(published)
		for i := range total {
			// Stay within the fast reader's bound; the slow one never reads.
			for pending(fast) >= queueLen/2 {
				runtime.Gosched()
			}
			e.Publish("t", ev("", fmt.Sprint(i)))
		}
	}()

	select {
	case <-published:
	case <-time.After(10 * time.Second):
		t.Fatal("Publish blocked")
	}
	select {
	case n := <-received:
		if n != total {
			t.Errorf("fast subscriber got %d events, want %d", n, total)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("fast subscriber did not receive every event")
	}

	if !slow.Evicted() || !isClosed(slow.Done()) {
		t.Fatal("slow subscriber not evicted")
	}
	if fast.Evicted() {
		t.Fatal("fast subscriber evicted")
	}
	if got := slow.Take(nil); len(got) != 0 {
		t.Errorf("evicted subscriber kept %d events", len(got))
	}
	if n := e.Subscribers("t"); n != 1 {
		t.Errorf("Subscribers = %d, want 1", n)
	}
	if st := e.Stats(); st.Evicted != 1 || st.Delivered != total+queueLen {
		t.Errorf("Stats = %+v", st)
	}
	slow.Close() // after eviction Close is a harmless no-op
}

func pending(s *Subscriber) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue)
}

func TestClose(t *testing.T) {
	e := NewEmitter(0)
	a, b := e.Subscribe("t", "u"), e.Subscribe("t")
	e.Publish("t", ev("", "before"))
	a.Close()
	a.Close()
	if !isClosed(a.Done()) || a.Evicted() {
		t.Fatal("Close: Done not closed or reported as evicted")
	}
	if n := e.Publish("t", ev("", "after")); n != 1 {
		t.Errorf("Publish after Close reached %d, want 1", n)
	}
	if got := a.Take(nil); len(got) != 0 {
		t.Errorf("closed subscriber got %q", frames(got))
	}
	if e.Subscribers("t") != 1 || e.Subscribers("u") != 0 {
		t.Errorf("Subscribers t=%d u=%d", e.Subscribers("t"), e.Subscribers("u"))
	}
	if _, ok := e.topics["u"]; ok {
		t.Error("empty topic u kept in map")
	}
	if got := b.Take(nil); len(got) != 2 {
		t.Errorf("remaining subscriber got %q", frames(got))
	}
	b.Close()
	if len(e.topics) != 0 {
		t.Errorf("topics left: %v", e.topics)
	}
}

func TestNoGoroutines(t *testing.T) {
	base := runtime.NumGoroutine()
	e := NewEmitter(4)
	subs := make([]*Subscriber, 1000)
	for i := range subs {
		subs[i] = e.Subscribe("all", fmt.Sprint("user-", i))
	}
	e.Publish("all", ev("", "x"))
	for i := range 10 { // overflow some to exercise eviction
		e.Publish("user-1", ev("", fmt.Sprint(i)))
	}
	if n := runtime.NumGoroutine(); n > base {
		t.Errorf("goroutines grew from %d to %d with subscribers open", base, n)
	}
	for _, s := range subs {
		s.Close()
	}
	deadline := time.Now().Add(time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		t.Errorf("goroutines: %d, baseline %d", n, base)
	}
	if len(e.topics) != 0 {
		t.Errorf("%d topics left after all subscribers closed", len(e.topics))
	}
}

func TestConcurrent(t *testing.T) {
	e := NewEmitter(4)
	topics := []string{"a", "b", "c", "d"}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := ""
				if i%2 == 0 {
					key = fmt.Sprint(i % 3)
				}
				e.Publish(topics[i%len(topics)], Event{Key: key, Frame: fragment})
			}
		})
	}
	for range 8 {
		wg.Go(func() {
			var buf []Event
			for range 200 {
				s := e.Subscribe(topics[rand.IntN(len(topics))], topics[rand.IntN(len(topics))])
				for range rand.IntN(5) {
					select {
					case <-s.Ready():
						buf = s.Take(buf[:0])
					case <-s.Done():
					case <-time.After(time.Millisecond):
					}
				}
				_ = e.Subscribers("a")
				_ = s.Evicted()
				s.Close()
			}
		})
	}
	time.Sleep(10 * time.Millisecond) // let publishers overlap subscriber churn
	done := make(chan struct{})
	go func() {
		for e.Stats().Published < 1000 {
			runtime.Gosched()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("publishers made no progress")
	}
	close(stop)
	wg.Wait()
	if len(e.topics) != 0 {
		t.Errorf("topics left: %v", e.topics)
	}
}

func BenchmarkPublish10k(b *testing.B) {
	const n, drainEvery = 10_000, 32
	e := NewEmitter(64)
	subs := make([]*Subscriber, n)
	for i := range subs {
		subs[i] = e.Subscribe("room")
	}
	ev := Event{Frame: Frame("users", fragment)}
	var buf []Event
	for range drainEvery { // grow queues to their steady-state capacity
		e.Publish("room", ev)
	}
	for _, s := range subs {
		buf = s.Take(buf[:0])
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if e.Publish("room", ev) != n {
			b.Fatal("subscriber lost")
		}
		if i%drainEvery == drainEvery-1 {
			b.StopTimer()
			for _, s := range subs {
				buf = s.Take(buf[:0])
			}
			b.StartTimer()
		}
	}
}
