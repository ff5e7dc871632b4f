package handlers

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"

	"globalpresence/internal/shrink"
)

// Limits bounds what one client can do; zero values take the defaults.
type Limits struct {
	HiPerSec         float64 // "say hi" posts per second per user and per address (1)
	HiBurst          int     // (3)
	LightPerSec      float64 // lightbulb switches per second per user and per address (5)
	LightBurst       int     // (10)
	StreamsPerClient int     // concurrent streams per client address (20)
	ConnsPerClient   int     // open connections per client address, streams aside (64)
	MaxStreams       int     // concurrent streams on this instance (19,000: the file limit)
}

func (l *Limits) defaults() {
	if l.HiPerSec <= 0 {
		l.HiPerSec, l.HiBurst = 1, max(l.HiBurst, 3)
	}
	if l.LightPerSec <= 0 {
		l.LightPerSec, l.LightBurst = 5, max(l.LightBurst, 10)
	}
	l.HiBurst, l.LightBurst = max(l.HiBurst, 1), max(l.LightBurst, 1)
	if l.StreamsPerClient <= 0 {
		l.StreamsPerClient = 20
	}
	if l.ConnsPerClient <= 0 {
		l.ConnsPerClient = 64
	}
	if l.MaxStreams <= 0 {
		l.MaxStreams = 19000
	}
}

// limiter is a token bucket per key (a user or a client address), forgotten
// once idle so the map stays as small as the set of active clients.
type limiter struct {
	perSec float64
	burst  int

	mu      sync.Mutex
	buckets map[string]*bucket
	// sweeping is armed while any bucket is kept: an idle server keeps
	// none, nor the pages they were scattered over.
	sweeping *time.Timer
}

type bucket struct {
	lim  *rate.Limiter
	used time.Time
}

func newLimiter(perSec float64, burst int) *limiter {
	return &limiter{perSec: perSec, burst: burst, buckets: make(map[string]*bucket)}
}

// idleAfter is how long an untouched bucket is kept: by then it is full
// again, so forgetting it changes nothing.
func (l *limiter) idleAfter() time.Duration {
	return time.Duration(float64(l.burst)/l.perSec*float64(time.Second)) + time.Second
}

// allow takes one token from every key's bucket, or none: it returns how
// long to wait when any of them is empty. A key with no bucket has a full
// one, so buckets are made only for allowed requests: a flood of refused
// ones leaves nothing behind.
func (l *limiter) allow(now time.Time, keys ...string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var wait time.Duration
	for _, k := range keys {
		if b := l.buckets[k]; b != nil {
			if short := 1 - b.lim.TokensAt(now); short > 0 {
				wait = max(wait, time.Duration(short/l.perSec*float64(time.Second)))
			}
		}
	}
	if wait > 0 {
		return wait
	}
	for _, k := range keys {
		b := l.buckets[k]
		if b == nil {
			b = &bucket{lim: rate.NewLimiter(rate.Limit(l.perSec), l.burst)}
			l.buckets[k] = b
			if l.sweeping == nil {
				l.sweeping = time.AfterFunc(l.idleAfter(), l.sweep)
			}
		}
		b.used = now
		b.lim.AllowN(now, 1)
	}
	return 0
}

// sweep forgets the buckets untouched for idleAfter, and comes back while
// any are left.
func (l *limiter) sweep() {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	shrink.DeleteFunc(&l.buckets, func(_ string, b *bucket) bool { return now.Sub(b.used) > l.idleAfter() })
	if len(l.buckets) == 0 {
		l.sweeping = nil
		return
	}
	l.sweeping.Reset(l.idleAfter())
}

// tooMany is the 429 answer, with the wait in Retry-After.
func tooMany(c echo.Context, wait time.Duration, what string) error {
	c.Response().Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	return echo.NewHTTPError(http.StatusTooManyRequests, fmt.Sprintf("too many %s; try again in %s", what, wait.Round(100*time.Millisecond)))
}

// streamCounter caps concurrent streams per client address and in all.
type streamCounter struct {
	perClient, total int

	mu       sync.Mutex
	byClient map[string]int
	open     int
}

func newStreamCounter(perClient, total int) *streamCounter {
	return &streamCounter{perClient: perClient, total: total, byClient: make(map[string]int)}
}

// acquire counts a new stream from client, or says why it may not open.
func (s *streamCounter) acquire(client string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.open >= s.total:
		return "this server holds all the streams it can; try again shortly"
	case s.byClient[client] >= s.perClient:
		return fmt.Sprintf("too many streams from your address (at most %d)", s.perClient)
	}
	s.open++
	s.byClient[client]++
	return ""
}

func (s *streamCounter) release(client string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.open--
	if s.byClient[client]--; s.byClient[client] <= 0 {
		shrink.Delete(&s.byClient, client)
	}
}

// Open is how many streams are open now.
func (s *streamCounter) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open
}
