package handlers

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"globalpresence/presence"
)

// gapStore is the memory store with its announcements held back while cut,
// as a region cut off from its peers misses them.
type gapStore struct {
	*presence.Memory
	mu  sync.Mutex
	cut bool
}

func (s *gapStore) Watch(fn func(presence.Change)) {
	s.Memory.Watch(func(c presence.Change) {
		s.mu.Lock()
		cut := s.cut
		s.mu.Unlock()
		if !cut {
			fn(c)
		}
	})
}

func (s *gapStore) setCut(cut bool) {
	s.mu.Lock()
	s.cut = cut
	s.mu.Unlock()
}

// More messages than the feed shows, arriving together after a gap: every
// stream is shown each of them in passing, in order, then the feed.
func TestMessagesAfterAGapAreEachShown(t *testing.T) {
	store := &gapStore{Memory: presence.NewMemory("ams")}
	b := newTestBroadcaster(t, store)
	ctx := context.Background()
	sub, _, err := b.Attach(ctx, "home", "U", JSON)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Detach("home", "U", JSON, sub) })
	if _, err := store.Say(ctx, "home", presence.Post{Text: "before"}); err != nil {
		t.Fatal(err)
	}
	frames := func(until string) []string {
		var got []string
		deadline := time.After(2 * time.Second)
		for {
			for _, ev := range sub.Take(nil) {
				if strings.HasPrefix(ev.Key, evMessages) {
					got = append(got, string(ev.Frame))
				}
			}
			if len(got) > 0 && strings.Contains(got[len(got)-1], until) {
				return got
			}
			select {
			case <-sub.Ready():
			case <-deadline:
				t.Fatalf("no feed with %q; got %d feeds", until, len(got))
			}
		}
	}
	frames(`"before"`)

	store.setCut(true)
	var texts []string
	for i := range 15 {
		texts = append(texts, fmt.Sprint("missed #", i))
		if _, err := store.Say(ctx, "home", presence.Post{Text: texts[i]}); err != nil {
			t.Fatal(err)
		}
	}
	store.setCut(false)
	// The re-render after the gap (the store's re-read tells of every
	// part), done before the stream reads anything, as a client that
	// reads no faster than the events come: queued feeds must not replace
	// each other.
	b.flush("home", presence.AllParts)
	got := frames(`"missed #14"`)
	all := strings.Join(got, "\n")
	for _, text := range texts {
		if !strings.Contains(all, `"`+text+`"`) {
			t.Errorf("%q was never shown; feeds sent: %d", text, len(got))
		}
	}
	// In order: each feed's newest message is newer than the last's.
	newest := func(frame string) int {
		_, rest, _ := strings.Cut(frame, `"text":"missed #`)
		n := -1
		_, _ = fmt.Sscanf(rest, "%d", &n)
		return n
	}
	for i := 1; i < len(got); i++ {
		if a, b := newest(got[i-1]), newest(got[i]); b <= a {
			t.Fatalf("feed %d shows #%d after #%d", i, b, a)
		}
	}
}
