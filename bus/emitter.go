package bus

import (
	"sync"
	"sync/atomic"

	"globalpresence/internal/shrink"
)

// DefaultQueueLen is the per-subscriber queue bound used when NewEmitter is
// given a non-positive length.
const DefaultQueueLen = 64

// Emitter fans events out to subscribers by topic. It is safe for concurrent
// use and starts no goroutines.
type Emitter struct {
	queueLen int

	mu     sync.RWMutex
	topics map[string]*topic

	published, delivered, coalesced, evicted atomic.Uint64
}

// A slice rather than a set keeps fan-out a tight loop over pointers.
type topic struct {
	name string
	subs []*Subscriber
}

// Stats are cumulative counters. Delivered counts every subscriber that
// received an event, Coalesced the subset of those where it replaced a
// pending event.
type Stats struct {
	Published, Delivered, Coalesced, Evicted uint64
}

// NewEmitter returns an emitter whose subscribers hold at most queueLen
// pending events (DefaultQueueLen if queueLen <= 0).
func NewEmitter(queueLen int) *Emitter {
	if queueLen <= 0 {
		queueLen = DefaultQueueLen
	}
	return &Emitter{queueLen: queueLen, topics: make(map[string]*topic)}
}

// Subscribe returns a subscriber to the given topics. Call Close when done.
func (e *Emitter) Subscribe(topics ...string) *Subscriber {
	return e.SubscribeFunc(nil, topics...)
}

// SubscribeFunc is Subscribe with a notify callback (nil for none), called
// whenever the subscriber's queue goes from empty to non-empty, and once
// when the subscriber is evicted, so a consumer can react without a
// goroutine parked on Ready. It runs on the publisher's goroutine, outside
// the subscriber's lock but while the emitter may be read-locked: it must
// not block, and must not call the emitter or Close (hand the work off).
func (e *Emitter) SubscribeFunc(notify func(), topics ...string) *Subscriber {
	s := &Subscriber{em: e, max: e.queueLen, notify: notify, refs: make([]topicRef, 0, len(topics))}
	e.mu.Lock()
	defer e.mu.Unlock()
next:
	for _, name := range topics {
		for _, r := range s.refs {
			if r.t.name == name {
				continue next
			}
		}
		t := e.topics[name]
		if t == nil {
			t = &topic{name: name}
			e.topics[name] = t
		}
		s.refs = append(s.refs, topicRef{t, len(t.subs)})
		t.subs = append(t.subs, s)
	}
	return s
}

// Publish queues ev for every subscriber of topic and returns how many
// received it. It never waits for a subscriber: one whose queue is full is
// evicted instead.
func (e *Emitter) Publish(topic string, ev Event) int {
	var buf [8]*Subscriber
	evicted := buf[:0]
	var n, merges int

	// A read lock lets publishers to any topics fan out in parallel; each
	// push only takes that subscriber's own short lock.
	e.mu.RLock()
	if t := e.topics[topic]; t != nil {
		for _, s := range t.subs {
			res, notify := s.push(ev)
			if notify != nil {
				notify()
			}
			switch res {
			case appended:
				n++
			case merged:
				n++
				merges++
			case overflow:
				evicted = append(evicted, s)
			}
		}
	}
	e.mu.RUnlock()

	// Unlinking needs the write lock, so it waits until the fan-out is over.
	// Until then an evicted subscriber is closed and simply drops pushes.
	if len(evicted) > 0 {
		e.mu.Lock()
		for _, s := range evicted {
			e.unlinkLocked(s)
		}
		e.mu.Unlock()
		e.evicted.Add(uint64(len(evicted)))
		for _, s := range evicted {
			if notify := s.notifyFunc(); notify != nil {
				notify()
			}
		}
	}
	e.published.Add(1)
	e.delivered.Add(uint64(n))
	e.coalesced.Add(uint64(merges))
	return n
}

// Subscribers returns the number of live subscribers of topic.
func (e *Emitter) Subscribers(topic string) int {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if t := e.topics[topic]; t != nil {
		return len(t.subs)
	}
	return 0
}

// Stats returns a snapshot of the counters.
func (e *Emitter) Stats() Stats {
	return Stats{
		Published: e.published.Load(),
		Delivered: e.delivered.Load(),
		Coalesced: e.coalesced.Load(),
		Evicted:   e.evicted.Load(),
	}
}

// unlinkLocked removes s from all its topics, dropping topics left empty so
// the map does not grow with every room or user ever seen. e.mu must be held
// for writing. It is idempotent.
func (e *Emitter) unlinkLocked(s *Subscriber) {
	for _, r := range s.refs {
		t := r.t
		last := len(t.subs) - 1
		if r.i != last {
			// Swap-remove; the moved subscriber's index must follow.
			m := t.subs[last]
			t.subs[r.i] = m
			for k := range m.refs {
				if m.refs[k].t == t {
					m.refs[k].i = r.i
					break
				}
			}
		}
		t.subs[last] = nil
		t.subs = t.subs[:last]
		if last == 0 {
			shrink.Delete(&e.topics, t.name)
		}
	}
	s.refs = nil
}
