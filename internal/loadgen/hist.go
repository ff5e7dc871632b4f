package loadgen

import (
	"math/bits"
	"sync/atomic"
)

// Latencies are kept in microseconds in log-linear buckets: exact below 256
// µs, then 128 buckets per power of two, so a bucket's midpoint is within
// 0.4% of any value in it. Buckets are counted atomically by every reader
// goroutine and travel between processes as a sparse list.
const (
	histExact = 256
	histSub   = 128
	histLen   = histExact + 40*histSub // up to 2^47 µs
)

type histogram struct {
	counts [histLen]atomic.Uint64
	max    atomic.Int64
}

func bucketOf(us int64) int {
	if us < histExact {
		return int(max(us, 0))
	}
	shift := bits.Len64(uint64(us)) - 8
	i := histExact + (shift-1)*histSub + int(uint64(us)>>shift) - histSub
	return min(i, histLen-1)
}

// bucketValue is the midpoint of bucket i, in µs.
func bucketValue(i int) float64 {
	if i < histExact {
		return float64(i)
	}
	shift := (i-histExact)/histSub + 1
	lo := uint64(histSub+(i-histExact)%histSub) << shift
	return float64(lo) + float64(uint64(1)<<shift)/2
}

func (h *histogram) record(us int64) {
	h.counts[bucketOf(us)].Add(1)
	for {
		m := h.max.Load()
		if us <= m || h.max.CompareAndSwap(m, us) {
			return
		}
	}
}

// sparse lists the non-empty buckets as [index, count] pairs.
func (h *histogram) sparse() [][2]uint64 {
	var out [][2]uint64
	for i := range h.counts {
		if n := h.counts[i].Load(); n > 0 {
			out = append(out, [2]uint64{uint64(i), n})
		}
	}
	return out
}

// merged is a histogram assembled from workers' sparse lists.
type merged struct {
	counts [histLen]uint64
	total  uint64
	maxUS  int64
}

func (m *merged) add(sp [][2]uint64, maxUS int64) {
	for _, p := range sp {
		if p[0] < histLen {
			m.counts[p[0]] += p[1]
			m.total += p[1]
		}
	}
	m.maxUS = max(m.maxUS, maxUS)
}

// quantile returns the q-quantile in milliseconds (0 when empty); the top
// quantile is capped at the exact maximum.
func (m *merged) quantile(q float64) float64 {
	if m.total == 0 {
		return 0
	}
	rank := uint64(q*float64(m.total) + 0.999999)
	rank = min(max(rank, 1), m.total)
	var seen uint64
	for i, n := range m.counts {
		if seen += n; seen >= rank {
			return min(bucketValue(i), float64(m.maxUS)) / 1000
		}
	}
	return float64(m.maxUS) / 1000
}
