package handlers

import (
	"sync"
	"time"
)

// settler returns memory to the OS once a burst of stream opens is over.
// Each open leaves ~20 KiB of garbage (net/http's buffers, which a hijacked
// connection never gives back, the request, renders), and a server holding
// idle streams allocates almost nothing, so nothing triggers the collection
// that would free it: after a reconnect storm the process would keep
// several times its live heap for minutes.
type settler struct {
	quiet   time.Duration // how long without an open ends a burst
	least   int           // opens that make a burst worth a collection
	release func(opens int)

	mu     sync.Mutex
	opens  int
	timer  *time.Timer
	closed bool
}

// A burst ends after half a second without an open; below a thousand opens
// the garbage is not worth a collection.
const (
	settleQuiet = 500 * time.Millisecond
	settleLeast = 1000
)

func newSettler(quiet time.Duration, least int, release func(opens int)) *settler {
	return &settler{quiet: quiet, least: least, release: release}
}

// opened counts a stream open and pushes the end of the burst back.
func (s *settler) opened() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.opens++
	if s.timer == nil {
		s.timer = time.AfterFunc(s.quiet, s.fire)
	} else {
		s.timer.Reset(s.quiet)
	}
}

func (s *settler) fire() {
	s.mu.Lock()
	n := s.opens
	s.opens = 0
	s.mu.Unlock()
	if n >= s.least {
		s.release(n)
	}
}

// stop cancels a pending release and ignores later opens.
func (s *settler) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.timer != nil {
		s.timer.Stop()
	}
}
