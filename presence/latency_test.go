package presence

import (
	"testing"
	"time"
)

// A region's figure shows once it rests on a few samples, and goes once the
// region has sent nothing for a while (no instance left there).
func TestLatencyReportsOnlySettledRecentRegions(t *testing.T) {
	l := newLatencies(nil)
	now := time.Unix(1_000_000, 0)
	for i := range latencyMinSamples {
		if got := l.report(now); len(got) != 0 {
			t.Fatalf("after %d samples: %+v, want nothing yet", i, got)
		}
		l.observe("syd", now.Add(-80*time.Millisecond).UnixNano(), now)
	}
	if got := l.report(now); len(got) != 1 || got[0].Region != "syd" || got[0].P50Ms != 80 {
		t.Fatalf("after %d samples: %+v, want syd at 80 ms", latencyMinSamples, got)
	}
	if got := l.report(now.Add(latencyFresh + time.Second)); len(got) != 0 {
		t.Fatalf("with no recent sample: %+v, want nothing", got)
	}
}
