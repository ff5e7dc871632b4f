package handlers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"globalpresence/bus"
	"globalpresence/presence"
	"globalpresence/templates"
)

// Opening and closing streams of an empty room concurrently must leave every
// still-open stream counted on the room state registered in b.rooms, so it
// keeps hearing the room's changes; and the room is forgotten only when the
// last of them closes.
func TestAttachDetachEmptyRoomRace(t *testing.T) {
	tmpl, err := templates.Parse()
	if err != nil {
		t.Fatal(err)
	}
	store := presence.NewMemory("ams")
	em := bus.NewEmitter(1 << 12)
	b := NewBroadcaster(store, em, tmpl, BroadcasterConfig{Region: "ams", Coalesce: time.Millisecond, Heartbeat: time.Hour})
	defer b.Close()
	ctx := context.Background()

	const rounds, workers, iters = 12, 64, 150
	const keptFormat = Format((iters - 1) % int(numFormats)) // the format of each worker's last stream
	for round := range rounds {
		room := fmt.Sprintf("race-%d", round)
		// Which workers keep their last stream open varies by round; every
		// fourth round keeps none.
		keeps := func(w int) bool { return round%4 != 3 && w%(round%4+2) == 0 }
		kept := make([]*bus.Subscriber, workers)
		var wg sync.WaitGroup
		for w := range workers {
			user := presence.UserID(fmt.Sprintf("%08X", w))
			wg.Go(func() {
				for i := range iters {
					sub, _, err := b.Attach(ctx, room, user, Format(i%int(numFormats)))
					if err != nil {
						t.Error(err)
						return
					}
					if i == iters-1 && keeps(w) {
						kept[w] = sub
						return
					}
					b.Detach(room, user, Format(i%int(numFormats)), sub)
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}

		open := 0
		for _, sub := range kept {
			if sub != nil {
				open++
			}
		}
		b.mu.Lock()
		rs := b.rooms[room]
		var conns int
		var users map[presence.UserID]int
		var watch [numFormats]int
		if rs != nil {
			conns, watch = rs.conns, rs.watch
			users = make(map[presence.UserID]int, len(rs.users))
			for u, us := range rs.users {
				users[u] = us.conns
			}
		}
		b.mu.Unlock()
		switch {
		case open == 0 && rs != nil:
			t.Fatalf("round %d: no streams open, but the room is registered with %d conns", round, conns)
		case open > 0 && rs == nil:
			t.Fatalf("round %d: %d streams open, but the room is not registered", round, open)
		case conns != open:
			t.Fatalf("round %d: registered room counts %d conns, %d streams are open", round, conns, open)
		case watch != [numFormats]int{keptFormat: open}:
			t.Fatalf("round %d: registered room counts %v streams per format, %d are open in format %d", round, watch, open, keptFormat)
		}
		for w, sub := range kept {
			if user := presence.UserID(fmt.Sprintf("%08X", w)); sub != nil && users[user] != 1 {
				t.Fatalf("round %d: user %s has one stream open, registered room counts %d", round, user, users[user])
			}
		}

		// A change to the room reaches every open stream.
		for _, sub := range kept {
			if sub != nil {
				sub.Take(nil) // what came before the change
			}
		}
		text := fmt.Sprintf("hello round %d", round)
		if _, err := store.Say(ctx, room, presence.Post{User: "ABCDEF01", Colour: "red", From: "ams", Text: text}); err != nil {
			t.Fatal(err)
		}
		deadline := time.After(5 * time.Second)
		for w, sub := range kept {
			if sub != nil && !receives(sub, text, deadline) {
				t.Fatalf("round %d: worker %d's open stream did not get the new message", round, w)
			}
		}

		for w, sub := range kept {
			if sub != nil {
				b.Detach(room, presence.UserID(fmt.Sprintf("%08X", w)), keptFormat, sub)
			}
		}
		b.mu.Lock()
		rs, conns = b.rooms[room], 0
		if rs != nil {
			conns = rs.conns
		}
		b.mu.Unlock()
		if rs != nil {
			t.Fatalf("round %d: all streams closed, but the room is registered with %d conns", round, conns)
		}
	}
}

// receives waits until sub gets a messages event containing text.
func receives(sub *bus.Subscriber, text string, deadline <-chan time.Time) bool {
	for {
		for _, ev := range sub.Take(nil) {
			if ev.Key == evMessages && bytes.Contains(ev.Frame, []byte(text)) {
				return true
			}
		}
		select {
		case <-sub.Ready():
		case <-sub.Done():
			return false
		case <-deadline:
			return false
		}
	}
}

// A stream attached but not yet joined is still one of its user's tabs: a
// presence re-render in between (another user joining) does not tell it
// "0 tabs".
func TestAttachedStreamCountsBeforeItJoins(t *testing.T) {
	store := presence.NewMemory("ams")
	b := newTestBroadcaster(t, store)
	ctx := context.Background()
	sub, snap, err := b.Attach(ctx, "home", "U", JSON)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Detach("home", "U", JSON, sub) })
	if tabs := string(snap[len(snap)-1]); !strings.Contains(tabs, `"tabs":1`) {
		t.Fatalf("an attached stream starts with %q", tabs)
	}
	_ = sub.Take(nil)
	if err := store.Join(ctx, "home", presence.Tab{ID: "v", User: "V", Region: "ams"}); err != nil {
		t.Fatal(err)
	}
	b.flush("home", presence.PartPresence)
	for _, ev := range sub.Take(nil) {
		if ev.Key == evTabs && strings.Contains(string(ev.Frame), `"tabs":0`) {
			t.Fatalf("an attached stream was told %q", ev.Frame)
		}
	}
}

// A room renders only the formats its streams use. A format's first stream
// still gets the snapshot a broadcaster rendering everything would give it,
// and hears the changes from then on; its last stream takes the renders
// with it.
func TestOnlyWatchedFormatsAreRendered(t *testing.T) {
	store := presence.NewMemory("ams")
	b := newTestBroadcaster(t, store)
	ctx := context.Background()
	say := func(text string) {
		t.Helper()
		if _, err := store.Say(ctx, "r", presence.Post{User: "ABCDEF01", Colour: "red", From: "ams", Text: text}); err != nil {
			t.Fatal(err)
		}
		b.flush("r", presence.PartMessages)
	}
	if err := store.Join(ctx, "r", presence.Tab{ID: "v", User: "ABCDEF01", Region: "ams"}); err != nil {
		t.Fatal(err)
	}
	say("first")
	held := func(f Format) []string {
		b.mu.Lock()
		defer b.mu.Unlock()
		var names []string
		for name, p := range b.rooms["r"].parts {
			if p[f].Frame != nil {
				names = append(names, partNames[name])
			}
		}
		return names
	}

	js, _, err := b.Attach(ctx, "r", "U", JSON)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Detach("r", "U", JSON, js)
	say("second") // rendered in JSON alone
	if h, bd := held(HTML), held(Badge); len(h)+len(bd) != 0 {
		t.Fatalf("with JSON streams only, the room holds HTML renders of %v and badge renders of %v", h, bd)
	}

	html, snap, err := b.Attach(ctx, "r", "W", HTML)
	if err != nil {
		t.Fatal(err)
	}
	// What rendering everything from scratch gives.
	now, err := store.Snapshot(ctx, "r", presence.AllParts)
	if err != nil {
		t.Fatal(err)
	}
	var want [][]byte
	for _, render := range []func() (framed, error){
		func() (framed, error) { return b.r.status(now.Status) },
		func() (framed, error) { return b.r.light(now.Light) },
		func() (framed, error) {
			return b.r.regions(now.Regions, presence.TabCounts(now.Regions), "ams", b.large)
		},
		func() (framed, error) { f, _, err := b.r.messages(now.Messages, nil); return f, err },
		func() (framed, error) { return b.r.latency(now.Latency, "ams") },
		func() (framed, error) { return b.r.tabs("W", 1) },
	} {
		ev, err := render()
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, ev[HTML].Frame)
	}
	if got, wanted := string(bytes.Join(snap, nil)), string(bytes.Join(want, nil)); got != wanted {
		t.Fatalf("the first HTML stream's snapshot:\n%s\nwant, as rendered from scratch:\n%s", got, wanted)
	}
	_ = html.Take(nil)
	say("third")
	if !receives(html, "third", time.After(5*time.Second)) {
		t.Fatal("the HTML stream did not hear a message posted after it opened")
	}

	b.Detach("r", "W", HTML, html)
	if h := held(HTML); len(h) != 0 {
		t.Fatalf("after its last HTML stream left, the room still holds HTML renders of %v", h)
	}
	if j := held(JSON); len(j) != 5 {
		t.Fatalf("the JSON stream's room holds JSON renders of %v, want all 5 parts", j)
	}
}

// Rooms cost nothing once their streams have gone: whatever a crowd made
// the broadcaster and the emitter hold is let go with it.
func TestBroadcasterGivesBackACrowdsMemory(t *testing.T) {
	store := presence.NewMemory("ams")
	b := newTestBroadcaster(t, store)
	ctx := context.Background()
	live := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	type stream struct {
		room string
		user presence.UserID
		sub  *bus.Subscriber
	}
	base := live()
	var open []stream
	for i := range 10_000 {
		s := stream{room: fmt.Sprint("room-", i%5_000), user: presence.UserID(fmt.Sprintf("%08X", i))}
		var err error
		if s.sub, _, err = b.Attach(ctx, s.room, s.user, JSON); err != nil {
			t.Fatal(err)
		}
		open = append(open, s)
	}
	full := live()
	for _, s := range open {
		b.Detach(s.room, s.user, JSON, s.sub)
	}
	open = nil
	after := live()
	t.Logf("live heap: %d KiB, %d KiB with 10,000 streams in 5,000 rooms, %d KiB after they closed", base>>10, full>>10, after>>10)
	if full < base+4<<20 {
		t.Fatalf("10,000 streams took only %d KiB: the test shows nothing", (full-base)>>10)
	}
	if after > base+128<<10 {
		t.Errorf("%d KiB kept after every stream closed", (after-base)>>10)
	}
	if n := b.Rooms(); n != 0 {
		t.Errorf("%d rooms still held", n)
	}
}

// slowFirstRead is the memory store whose reads of one room wait until
// released, as a room's first read from a distant or busy store does.
type slowFirstRead struct {
	*presence.Memory
	room    string
	reading chan struct{}
	release chan struct{}
}

func (s *slowFirstRead) Snapshot(ctx context.Context, room string, parts presence.Part) (presence.Snapshot, error) {
	if room == s.room {
		s.reading <- struct{}{}
		<-s.release
	}
	return s.Memory.Snapshot(ctx, room, parts)
}

// A room whose read is slow holds up only itself: another room's streams
// attach, and its changes are published, while that read waits.
func TestSlowRoomReadHoldsUpNoOtherRoom(t *testing.T) {
	store := &slowFirstRead{Memory: presence.NewMemory("ams"), room: "slow", reading: make(chan struct{}), release: make(chan struct{})}
	b := newTestBroadcaster(t, store)
	ctx := context.Background()

	fast, _, err := b.Attach(ctx, "fast", "U", JSON)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Detach("fast", "U", JSON, fast)
	slowDone := make(chan error, 1)
	go func() {
		sub, _, err := b.Attach(ctx, "slow", "V", JSON)
		if err == nil {
			b.Detach("slow", "V", JSON, sub)
		}
		slowDone <- err
	}()
	<-store.reading // the slow room's first read has begun, and waits

	attached := make(chan error, 1)
	go func() {
		other, snapshot, err := b.Attach(ctx, "other", "W", JSON)
		if err == nil {
			b.Detach("other", "W", JSON, other)
			if len(snapshot) == 0 {
				err = errors.New("no snapshot")
			}
		}
		attached <- err
	}()
	select {
	case err := <-attached:
		if err != nil {
			t.Fatalf("attaching to another room during a slow read: %v", err)
		}
	case <-time.After(10 * time.Second):
		close(store.release)
		t.Fatal("attaching to another room waited for a slow read of the first")
	}
	if err := store.Join(ctx, "fast", presence.Tab{ID: "t", User: "X", Region: "ams"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for published := false; !published; {
		for _, ev := range fast.Take(nil) {
			published = published || (ev.Key == evRegions && bytes.Contains(ev.Frame, []byte(`"tabs":1`)))
		}
		select {
		case <-deadline:
			close(store.release)
			t.Fatal("a change to a room was not published while another room's read waited")
		case <-fast.Ready():
		case <-time.After(10 * time.Millisecond):
		}
	}
	close(store.release)
	if err := <-slowDone; err != nil {
		t.Fatal(err)
	}
}
