package presence

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// Flaw 7 of the original: concurrent LPUSHes left each region's list in a
// different order. Merged per-region feeds come out in one order whatever
// order the feeds or duplicates arrive in.
func TestMergeFeedsSameOrderEverywhere(t *testing.T) {
	var clock Clock
	feeds := map[string][]Message{}
	for i := range 30 {
		region := []string{"ams", "iad", "syd"}[i%3]
		feeds[region] = append(feeds[region], NewMessage(clock.Now(), region, Post{Text: "hi"}))
	}
	var want []Message
	for trial := range 20 {
		var in [][]Message
		for _, f := range feeds {
			f = slices.Clone(f)
			rand.Shuffle(len(f), func(i, j int) { f[i], f[j] = f[j], f[i] })
			in = append(in, f)
			if trial%2 == 1 {
				in = append(in, f[:len(f)/2]) // the same messages seen twice
			}
		}
		got := MergeFeeds(in, FeedLen)
		if len(got) != FeedLen {
			t.Fatalf("got %d messages", len(got))
		}
		for i := 1; i < len(got); i++ {
			if got[i-1].HLC <= got[i].HLC {
				t.Fatalf("not newest first at %d", i)
			}
		}
		if want == nil {
			want = got
		} else if !slices.EqualFunc(got, want, func(a, b Message) bool { return a.ID == b.ID }) {
			t.Fatalf("trial %d merged differently", trial)
		}
	}
}

func TestNewMessageIDsUnique(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		m := NewMessage(42, "ams", Post{})
		if seen[m.ID] {
			t.Fatalf("duplicate id %s", m.ID)
		}
		seen[m.ID] = true
	}
}

// Messages arriving in any order, some twice, leave a region's feed with the
// newest few, each once.
func TestAddToFeedKeepsTheNewest(t *testing.T) {
	var clock Clock
	var all []Message
	for range 25 {
		all = append(all, NewMessage(clock.Now(), "ams", Post{Text: "hi"}))
	}
	want := MergeFeeds([][]Message{all}, 10)
	for range 20 {
		var feed []Message
		for _, i := range rand.Perm(len(all)) {
			feed = AddToFeed(feed, all[i], 10)
			feed = AddToFeed(feed, all[rand.IntN(len(all))], 10)
		}
		if got := MergeFeeds([][]Message{feed}, 10); len(feed) != 10 || !slices.Equal(got, want) {
			t.Fatalf("feed of %d: %v, want %v", len(feed), got, want)
		}
	}
}
