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
// as a region cut off from its peers misses them; heal tells of everything
// at once, as the re-read after a gap does.
type gapStore struct {
	*presence.Memory
	mu  sync.Mutex
	cut bool
	fns []func(presence.Change)
}

func (s *gapStore) Watch(fn func(presence.Change)) {
	s.mu.Lock()
	s.fns = append(s.fns, fn)
	s.mu.Unlock()
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
	fns := s.fns
	s.mu.Unlock()
	if !cut {
		for _, fn := range fns {
			fn(presence.Change{Parts: presence.AllParts})
		}
	}
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
	t.Cleanup(func() { b.Detach("home", "U", sub) })
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
	flushes := b.Stats().Flushes
	store.setCut(false)
	// Read only once the re-render is done, as a client that reads no
	// faster than the events come: queued feeds must not replace each other.
	for deadline := time.Now().Add(2 * time.Second); b.Stats().Flushes == flushes; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no re-render after the gap")
		}
	}
	b.renderMu.Lock() // the flush holds it while it publishes
	b.renderMu.Unlock()
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
