package presence

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// Presence is re-derived from every instance's tabs on each (coalesced)
// render; these are the costs of merging it and the other parts.

func BenchmarkGroupTabs(b *testing.B) {
	for _, n := range []int{100, 10000, 50000} {
		tabs := make([]Tab, n)
		for i := range tabs {
			tabs[i] = Tab{ID: fmt.Sprint(i), User: UserID(fmt.Sprintf("%08X", i/2)), Colour: "red",
				Region: []string{"ams", "iad", "syd"}[i%3], Since: time.Unix(int64(i), 0)}
		}
		b.Run(fmt.Sprintf("tabs=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				TabCounts(GroupTabs(tabs))
			}
		})
	}
}

func BenchmarkFoldLight(b *testing.B) {
	var clock Clock
	records := map[string]LightRecord{}
	on := true
	for i, g := range []string{"ams", "iad", "syd", "nrt", "gru", "jnb", "lhr", "sin"} {
		sw := Switch{By: "U", From: g}
		if i%3 == 0 {
			sw.Set = &on
		}
		records[g] = ApplySwitch(records, g, sw, clock.Now())
	}
	b.ReportAllocs()
	for b.Loop() {
		FoldLight(records)
	}
}

func BenchmarkMergeFeeds(b *testing.B) {
	var clock Clock
	feeds := make([][]Message, 8)
	for i := range feeds {
		for range FeedLen {
			feeds[i] = append(feeds[i], NewMessage(clock.Now(), fmt.Sprint("r", i), Post{Text: "hi"}))
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		MergeFeeds(feeds, FeedLen)
	}
}

// A join and a leave on the embedded store, with watchers notified.
func BenchmarkMemoryJoinLeave(b *testing.B) {
	m := NewMemory("ams")
	m.Watch(func(Change) {})
	ctx := context.Background()
	t := Tab{ID: "t", User: "U", Colour: "red", Region: "ams"}
	b.ReportAllocs()
	for b.Loop() {
		_ = m.Join(ctx, "home", t)
		_ = m.Leave(ctx, "home", t.ID)
	}
}
