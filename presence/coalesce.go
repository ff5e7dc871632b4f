package presence

import (
	"sync"
	"time"
)

// Coalescer turns a stream of changes into flushes: one goroutine calls flush
// for each room with every part changed since its last flush, so a burst of
// changes becomes one re-render. Presence is further held to one flush per
// interval per room, so no client gets more than a few presence renders per
// second whatever the churn, while a quiet room's first change goes at once.
// Latency figures, which change with every event, are held the same way.
type Coalescer struct {
	interval time.Duration
	flush    func(room string, parts Part)

	mu       sync.Mutex
	pending  map[string]Part
	lastPres map[string]time.Time
	wake     chan struct{}
	stop     chan struct{}
	done     chan struct{}
}

// NewCoalescer starts a coalescer; Stop ends it.
func NewCoalescer(interval time.Duration, flush func(room string, parts Part)) *Coalescer {
	c := &Coalescer{
		interval: interval,
		flush:    flush,
		pending:  make(map[string]Part),
		lastPres: make(map[string]time.Time),
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go c.run()
	return c
}

// Add records a change; it never blocks.
func (c *Coalescer) Add(ch Change) {
	c.mu.Lock()
	c.pending[ch.Room] |= ch.Parts
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Stop ends the goroutine after any flush in progress; pending changes are
// dropped.
func (c *Coalescer) Stop() {
	close(c.stop)
	<-c.done
}

type flushWork struct {
	room  string
	parts Part
}

func (c *Coalescer) run() {
	defer close(c.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var work []flushWork
	for {
		select {
		case <-c.stop:
			return
		case <-c.wake:
		case <-timer.C:
		}
		var next time.Duration
		work, next = c.due(work[:0], time.Now())
		for _, w := range work {
			c.flush(w.room, w.parts)
		}
		if next > 0 {
			timer.Reset(next)
		}
	}
}

// due takes the work that may run now and says how long until held presence
// changes may run (0 if none are held).
func (c *Coalescer) due(work []flushWork, now time.Time) ([]flushWork, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var next time.Duration
	for room, parts := range c.pending {
		if parts&throttledParts != 0 {
			if wait := c.lastPres[room].Add(c.interval).Sub(now); wait > 0 {
				parts &^= throttledParts
				if next == 0 || wait < next {
					next = wait
				}
			} else {
				c.lastPres[room] = now
			}
		}
		if parts != 0 {
			work = append(work, flushWork{room, parts})
		}
		if c.pending[room] &^= parts; c.pending[room] == 0 {
			delete(c.pending, room)
		}
	}
	for room, t := range c.lastPres {
		if now.Sub(t) >= c.interval && c.pending[room] == 0 {
			delete(c.lastPres, room)
		}
	}
	return work, next
}
