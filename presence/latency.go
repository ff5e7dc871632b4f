package presence

import (
	"math"
	"slices"
	"sync"
	"time"
)

// Latency is how long changes made in one region took to reach this
// instance: the "ping" between regions as users feel it.
type Latency struct {
	Region  string  `json:"region"`
	P50Ms   float64 `json:"p50_ms"`
	MaxMs   float64 `json:"max_ms"`
	Samples int     `json:"samples"`
}

// maxLatency is the longest delay taken for propagation; beyond it the
// origin's clock is off (an hour behind read as 3,600,000 ms), or the change
// waited out an outage, which the readiness check reports instead.
const maxLatency = 10 * time.Second

// latencyWindow is how many recent samples per region are kept.
const latencyWindow = 64

// A region's figure is reported once it rests on latencyMinSamples (the
// first ones carry connection set-up and are noisy) and while its latest
// sample is at most latencyFresh old: a region with no instance left sends
// nothing, and its last figure says nothing about now.
const (
	latencyMinSamples = 5
	latencyFresh      = 5 * time.Minute
)

// latencies records propagation delays per origin region.
type latencies struct {
	hook    func(region string, d time.Duration) // also told of each sample, if set
	mu      sync.Mutex
	samples map[string][]time.Duration // ring of the latest latencyWindow
	next    map[string]int
	last    map[string]time.Time // when the latest sample came
}

func newLatencies(hook func(string, time.Duration)) *latencies {
	return &latencies{hook: hook, samples: make(map[string][]time.Duration), next: make(map[string]int), last: make(map[string]time.Time)}
}

// observe records a change made in region at origin (unix nanoseconds).
func (l *latencies) observe(region string, origin int64, now time.Time) {
	if origin == 0 {
		return
	}
	d := now.Sub(time.Unix(0, origin))
	if d < -time.Second || d > maxLatency {
		return // the clocks disagree: this says nothing about the network
	}
	d = max(d, 0) // clocks may disagree slightly
	if l.hook != nil {
		l.hook(region, d)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last[region] = now
	s := l.samples[region]
	if len(s) < latencyWindow {
		l.samples[region] = append(s, d)
		return
	}
	s[l.next[region]] = d
	l.next[region] = (l.next[region] + 1) % latencyWindow
}

// report summarises every region with enough recent samples at now,
// sorted by region.
func (l *latencies) report(now time.Time) []Latency {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Latency, 0, len(l.samples))
	for region, s := range l.samples {
		if len(s) < latencyMinSamples || now.Sub(l.last[region]) > latencyFresh {
			continue
		}
		sorted := slices.Clone(s)
		slices.Sort(sorted)
		out = append(out, Latency{
			Region:  region,
			P50Ms:   ms(sorted[len(sorted)/2]),
			MaxMs:   ms(sorted[len(sorted)-1]),
			Samples: len(sorted),
		})
	}
	slices.SortFunc(out, func(a, b Latency) int {
		if a.Region < b.Region {
			return -1
		}
		if a.Region > b.Region {
			return 1
		}
		return 0
	})
	return out
}

// ms rounds to a tenth of a millisecond: finer is noise, and an unchanged
// figure is not sent again.
func ms(d time.Duration) float64 { return math.Round(d.Seconds()*1e4) / 10 }
