package presence

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"
	"time"
)

// The decoder of the store's announcements: whatever arrives on a channel,
// it is refused or it holds what its type needs; it never panics, and an
// oversized message is refused before it is decoded.
func FuzzDecodeWire(f *testing.F) {
	ch := roomChannel("home")
	tab := Tab{ID: "t1", User: "0123456789ABCDEF0123456789ABCDEF", Colour: "teal", Region: "ams", Since: time.Unix(1, 0)}
	for _, w := range []wire{
		{Type: "join", Room: "home", Region: "ams", Inst: "ams-1", Wall: 1, Tab: &tab, Seq: 1},
		{Type: "leave", Room: "home", Region: "ams", Inst: "ams-1", TabID: "t1", Seq: 2},
		{Type: "say", Room: "home", Region: "ams", Msg: &Message{ID: "m1", Text: "hi"}},
		{Type: "light", Room: "home", Region: "ams", Rec: []string{"flips", "3", "set", "{}"}},
		{Type: "tabs", Room: "home", Inst: "ams-1", Seq: 7},
	} {
		f.Add(ch, w.encode())
	}
	f.Add(ch, `{"t":"join","r":"home","i":"ams-1","s":1}`) // a join without its tab
	f.Add(ch, `{"t":"light","r":"home","rec":["flips"]}`)  // an odd record
	f.Add(ch, `{"t":"light","r":"home","rec":{}}`)         // Lua's empty table
	f.Add(ch, `{"t":"say","r":"home"} {"t":"say"}`)        // two in one
	f.Add(roomChannel("other"), `{"t":"say","r":"home"}`)  // another room's channel
	f.Add(ch, `{"t":"zap","r":"home"}`)
	f.Add(ch, `{"t":"say","r":"home","w":1e400}`)
	f.Fuzz(func(t *testing.T, channel, msg string) {
		w, err := decodeWire(channel, msg)
		if err != nil {
			return
		}
		if len(msg) > maxWire || !json.Valid([]byte(msg)) || !ValidRoom(w.Room) || channel != roomChannel(w.Room) {
			t.Fatalf("accepted %q on %q", msg, channel)
		}
		switch w.Type {
		case "join":
			if w.Tab == nil || w.Inst == "" || w.Seq == 0 {
				t.Fatalf("accepted a join without its tab, instance or sequence: %q", msg)
			}
		case "leave":
			if w.TabID == "" || w.Inst == "" || w.Seq == 0 {
				t.Fatalf("accepted a leave without its tab, instance or sequence: %q", msg)
			}
		case "light":
			if len(w.Rec)%2 != 0 {
				t.Fatalf("accepted an odd record: %q", msg)
			}
			w.record() // must not panic on whatever the fields hold
		case "say", "tabs":
		default:
			t.Fatalf("accepted type %q", w.Type)
		}
	})
}

// An oversized announcement is refused without decoding it: what that
// allocates does not grow with the message.
func TestDecodeWireRefusesOversizedAtOnce(t *testing.T) {
	msg := `{"t":"say","r":"home","m":{"text":"` + strings.Repeat("x", 1<<20) + `"}}`
	// TotalAlloc counts the whole process, where earlier tests' goroutines
	// may still allocate: an average over many calls makes their share
	// negligible.
	const calls = 100
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var err error
	for range calls {
		if _, err = decodeWire(roomChannel("home"), msg); err == nil {
			t.Fatal("a 1 MiB announcement was accepted")
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / calls; per > 4<<10 {
		t.Fatalf("a 1 MiB announcement: err %v, %d bytes allocated per call", err, per)
	}
}
