package presence

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"testing"
)

// garbage is what a burst of requests leaves: alive while the messages are
// posted, so that they are placed among it.
var garbage [][]byte

// Messages posted amid a burst's garbage pin a page each once it is
// collected; compacting moves them together and the pages are freed. What
// the store holds is unchanged.
func TestMemoryCompactGivesBackScatteredPages(t *testing.T) {
	ctx := context.Background()
	m := NewMemory("ams")
	defer m.Close()
	const rooms = 300
	for i := range 3000 {
		room := fmt.Sprint("room-", i%rooms)
		if _, err := m.Say(ctx, room, Post{User: UserID(fmt.Sprintf("%08X", i)), Colour: "red", From: "ams", Text: fmt.Sprint("message ", i)}); err != nil {
			t.Fatal(err)
		}
		for j := range 200 { // a request's worth of short-lived garbage
			garbage = append(garbage, make([]byte, 8+j%6*8))
		}
	}
	garbage = nil
	// What the store holds, as text: a snapshot would share its strings.
	snapshots := func() string {
		var all []Snapshot
		for i := range rooms {
			s, err := m.Snapshot(ctx, fmt.Sprint("room-", i), AllParts)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, s)
		}
		b, err := json.Marshal(all)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	inUse := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	held := snapshots()
	scattered := inUse()
	m.Compact()
	compacted := inUse()
	t.Logf("heap pages in use: %d KiB with the messages scattered, %d KiB compacted", scattered>>10, compacted>>10)
	if snapshots() != held {
		t.Fatal("compacting changed what the store holds")
	}
	if compacted > scattered/2 {
		t.Errorf("compacting kept %d of %d KiB of pages", compacted>>10, scattered>>10)
	}
}
