package presence

import (
	"sync"
	"time"
)

// HLC is a hybrid logical clock timestamp: wall milliseconds in the high 48
// bits, a logical counter in the low 16. It orders events across regions
// like wall time, yet never runs backwards and never ties within a clock, so
// last-writer-wins picks the same winner everywhere.
type HLC uint64

const hlcLogicalBits = 16

// Time is the wall-clock part of h.
func (h HLC) Time() time.Time {
	return time.UnixMilli(int64(h >> hlcLogicalBits)).UTC()
}

// Clock issues HLC timestamps. The zero value is ready to use.
type Clock struct {
	mu   sync.Mutex
	last HLC
	now  func() time.Time // for tests; nil means time.Now
}

// Now returns a timestamp greater than every one issued or observed before.
func (c *Clock) Now() HLC {
	c.mu.Lock()
	defer c.mu.Unlock()
	wall := time.Now
	if c.now != nil {
		wall = c.now
	}
	phys := HLC(wall().UnixMilli()) << hlcLogicalBits
	if phys > c.last {
		c.last = phys
	} else {
		c.last++
	}
	return c.last
}

// Observe moves the clock past a timestamp seen from another region, so the
// next local write sorts after it even if this machine's clock is behind. A
// timestamp more than limit ahead of this machine's clock pulls it only that
// far (a remote clock gone wild must not drag every region into the
// future); Observe reports whether it had to cut it.
func (c *Clock) Observe(h HLC, limit time.Duration) (cut bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	wall := time.Now
	if c.now != nil {
		wall = c.now
	}
	if most := HLC(wall().Add(limit).UnixMilli()) << hlcLogicalBits; h > most {
		h, cut = most, true
	}
	if h > c.last {
		c.last = h
	}
	return cut
}
