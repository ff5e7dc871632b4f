package bus

import "sync"

// Subscriber is one consumer's bounded queue of pending events. Its methods
// are safe for concurrent use.
//
// A consumer learns of new events either by waiting on Ready and Done, or by
// a notify callback (SubscribeFunc, SetNotify), which needs no goroutine per
// subscriber. The channels are made only when first asked for, so a
// callback-driven subscriber never pays for them.
type Subscriber struct {
	em *Emitter

	mu      sync.Mutex
	ready   chan struct{} // nil until Ready is called
	done    chan struct{} // nil until Done is called
	notify  func()
	queue   []Event // capacity is reused across Take calls
	max     int
	closed  bool // closed or evicted: accept nothing more
	evicted bool

	refs []topicRef // guarded by em.mu
}

// topicRef locates the subscriber inside a topic so unlinking is O(1).
type topicRef struct {
	t *topic
	i int
}

// Ready is signalled when the queue goes from empty to non-empty. It has a
// buffer of one, so a wake-up is never lost and never blocks the publisher.
func (s *Subscriber) Ready() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ready == nil {
		s.ready = make(chan struct{}, 1)
		if len(s.queue) > 0 { // events that came before anyone asked
			s.ready <- struct{}{}
		}
	}
	return s.ready
}

// Done is closed when the subscriber is closed or evicted.
func (s *Subscriber) Done() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done == nil {
		s.done = make(chan struct{})
		if s.closed {
			close(s.done)
		}
	}
	return s.done
}

// SetNotify makes the subscriber call notify whenever its queue goes from
// empty to non-empty, and once when it is evicted; see SubscribeFunc for the
// rules notify must follow. It replaces any earlier callback. If events are
// already pending, or the subscriber is already closed or evicted, notify is
// called once before SetNotify returns, so nothing that happened before it
// was set goes unnoticed.
func (s *Subscriber) SetNotify(notify func()) {
	s.mu.Lock()
	s.notify = notify
	now := notify != nil && (len(s.queue) > 0 || s.closed)
	s.mu.Unlock()
	if now {
		notify()
	}
}

// Evicted reports whether the subscriber was dropped for overflowing its queue.
func (s *Subscriber) Evicted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.evicted
}

// Take appends all pending events to dst in order and empties the queue.
func (s *Subscriber) Take(dst []Event) []Event {
	s.mu.Lock()
	dst = append(dst, s.queue...)
	clear(s.queue) // let taken frames be collected
	s.queue = s.queue[:0]
	if s.ready != nil {
		// A signal left from before this Take would be a spurious wake-up.
		select {
		case <-s.ready:
		default:
		}
	}
	s.mu.Unlock()
	return dst
}

// Close unsubscribes from all topics and closes Done. It is idempotent and
// does not call notify: the caller already knows.
func (s *Subscriber) Close() {
	s.mu.Lock()
	s.shutLocked()
	s.mu.Unlock()
	s.em.mu.Lock()
	s.em.unlinkLocked(s)
	s.em.mu.Unlock()
}

func (s *Subscriber) shutLocked() {
	if !s.closed {
		s.closed = true
		s.queue = nil
		if s.done != nil {
			close(s.done)
		}
	}
}

// notifyFunc returns the callback to run for an eviction.
func (s *Subscriber) notifyFunc() func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.notify
}

type pushResult uint8

const (
	dropped pushResult = iota // subscriber already closed
	appended
	merged   // replaced a pending event with the same key
	overflow // the push evicted the subscriber
)

// push enqueues ev. On overflow it only marks the subscriber evicted; the
// caller unlinks it from topics once it no longer holds the emitter's lock.
// When the queue went from empty to non-empty it also returns the notify
// callback, for the caller to run after the subscriber's lock is released.
func (s *Subscriber) push(ev Event) (pushResult, func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return dropped, nil
	}
	if ev.Key != "" {
		for i := range s.queue {
			if s.queue[i].Key == ev.Key {
				s.queue[i] = ev
				return merged, nil
			}
		}
	}
	if len(s.queue) >= s.max {
		s.evicted = true
		s.shutLocked()
		return overflow, nil
	}
	s.queue = append(s.queue, ev)
	if len(s.queue) > 1 {
		return appended, nil
	}
	if s.ready != nil {
		select {
		case s.ready <- struct{}{}:
		default:
		}
	}
	return appended, s.notify
}
