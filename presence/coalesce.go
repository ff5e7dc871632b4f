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
// Latency figures, which change with every event, go at most once a second.
type Coalescer struct {
	flush     func(room string, parts Part)
	throttles [2]throttle

	mu      sync.Mutex
	pending map[string]Part
	last    map[string]*[2]time.Time // per room, when each throttled part last went
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

type throttle struct {
	part  Part
	every time.Duration
}

// NewCoalescer starts a coalescer; Stop ends it.
func NewCoalescer(interval time.Duration, flush func(room string, parts Part)) *Coalescer {
	c := &Coalescer{
		flush:     flush,
		throttles: [2]throttle{{PartPresence, interval}, {PartLatency, max(interval, time.Second)}},
		pending:   make(map[string]Part),
		last:      make(map[string]*[2]time.Time),
		wake:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
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

// due takes the work that may run now and says how long until held parts
// may run (0 if none are held).
func (c *Coalescer) due(work []flushWork, now time.Time) ([]flushWork, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var next time.Duration
	for room, parts := range c.pending {
		last := c.last[room]
		if last == nil {
			last = new([2]time.Time)
			c.last[room] = last
		}
		for i, th := range c.throttles {
			if parts&th.part == 0 {
				continue
			}
			if wait := last[i].Add(th.every).Sub(now); wait > 0 {
				parts &^= th.part
				if next == 0 || wait < next {
					next = wait
				}
			} else {
				last[i] = now
			}
		}
		if parts != 0 {
			work = append(work, flushWork{room, parts})
		}
		if c.pending[room] &^= parts; c.pending[room] == 0 {
			delete(c.pending, room)
		}
	}
	for room, last := range c.last {
		if c.pending[room] == 0 && now.Sub(last[0]) >= c.throttles[0].every && now.Sub(last[1]) >= c.throttles[1].every {
			delete(c.last, room)
		}
	}
	switch {
	case len(c.pending) == 0 && len(c.last) == 0: // maps never shrink: let the grown ones go
		c.pending, c.last = make(map[string]Part), make(map[string]*[2]time.Time)
	case next == 0:
		next = c.throttles[1].every // come back to forget rooms gone quiet
	}
	return work, next
}
