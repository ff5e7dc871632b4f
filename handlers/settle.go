package handlers

import (
	"sync"
	"time"
)

// settler returns memory to the OS once a burst of stream opens or closes
// is over. Each open leaves ~20 KiB of garbage (net/http's buffers, which a
// hijacked connection never gives back, the request, renders), and a server
// holding idle streams allocates almost nothing, so nothing triggers the
// collection that would free it: after a reconnect storm the process would
// keep several times its live heap for minutes. Likewise after a mass close
// (everyone leaves): what the streams and their rooms held is garbage, and
// an idle server would keep it.
type settler struct {
	quiet   time.Duration // how long without an open ends a burst
	least   int           // opens that make a burst worth a collection
	release func(opens, closes int)

	mu     sync.Mutex
	opens  int
	closes int
	timer  *time.Timer
	closed bool
}

// A burst ends after half a second without an open or close; below a
// thousand of them the garbage is not worth a collection.
const (
	settleQuiet = 500 * time.Millisecond
	settleLeast = 1000
)

func newSettler(quiet time.Duration, least int, release func(opens, closes int)) *settler {
	return &settler{quiet: quiet, least: least, release: release}
}

// opened counts a stream open and pushes the end of the burst back.
func (s *settler) opened() { s.count(&s.opens) }

// ended counts a stream close and pushes the end of the burst back.
func (s *settler) ended() { s.count(&s.closes) }

func (s *settler) count(n *int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	*n++
	if s.timer == nil {
		s.timer = time.AfterFunc(s.quiet, s.fire)
	} else {
		s.timer.Reset(s.quiet)
	}
}

func (s *settler) fire() {
	s.mu.Lock()
	opens, closes := s.opens, s.closes
	s.opens, s.closes = 0, 0
	s.mu.Unlock()
	if opens+closes >= s.least {
		s.release(opens, closes)
	}
}

// stop cancels a pending release and ignores later opens and closes.
func (s *settler) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.timer != nil {
		s.timer.Stop()
	}
}
