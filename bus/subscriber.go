package bus

import "sync"

// Subscriber is one consumer's bounded queue of pending events. Its methods
// are safe for concurrent use.
type Subscriber struct {
	em    *Emitter
	ready chan struct{}
	done  chan struct{}

	mu      sync.Mutex
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
func (s *Subscriber) Ready() <-chan struct{} { return s.ready }

// Done is closed when the subscriber is closed or evicted.
func (s *Subscriber) Done() <-chan struct{} { return s.done }

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
	// A signal left from before this Take would be a spurious wake-up.
	select {
	case <-s.ready:
	default:
	}
	s.mu.Unlock()
	return dst
}

// Close unsubscribes from all topics and closes Done. It is idempotent.
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
		close(s.done)
	}
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
func (s *Subscriber) push(ev Event) pushResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return dropped
	}
	if ev.Key != "" {
		for i := range s.queue {
			if s.queue[i].Key == ev.Key {
				s.queue[i] = ev
				return merged
			}
		}
	}
	if len(s.queue) >= s.max {
		s.evicted = true
		s.shutLocked()
		return overflow
	}
	s.queue = append(s.queue, ev)
	if len(s.queue) == 1 {
		select {
		case s.ready <- struct{}{}:
		default:
		}
	}
	return appended
}
