package chaos

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// msg is a message as the app writes it: the id starts with the clock.
func msg(clock uint64, region string) Message {
	return Message{ID: fmt.Sprintf("%016x-%s-00000000", clock<<16, region), Text: fmt.Sprintf("t%d", clock)}
}

func hiOp(m Message, status int) Op {
	b, _ := json.Marshal(m)
	return Op{Kind: KindHi, Arg: m.Text, Status: status, Body: string(b)}
}

func card(region string, users map[string]int) Card {
	c := Card{Region: region}
	for id, n := range users {
		c.Users = append(c.Users, struct {
			ID   string `json:"id"`
			Tabs int    `json:"tabs"`
		}{id, n})
	}
	return c
}

// cleanRun is a consistent history and final state: 3 acknowledged
// toggles and 1 ambiguous one (counted: flips 4), 12 acknowledged messages
// of which the newest 10 are shown, and user A with two streams in ams and
// one in syd, user B with one in syd.
func cleanRun() ([]Op, Final) {
	ops := []Op{
		{Kind: KindToggle, Status: 200},
		{Kind: KindToggle, Status: 200},
		{Kind: KindToggle, Status: 200},
		{Kind: KindToggle, Err: "context deadline exceeded"},
		{Kind: KindToggle, Status: 429},
		{Kind: KindSet, Arg: "on", Status: 200},
	}
	var all []Message
	for i := uint64(1); i <= 12; i++ {
		m := msg(i, []string{"ams", "syd"}[i%2])
		all = append(all, m)
		ops = append(ops, hiOp(m, 201))
	}
	var shown []Message
	for i := len(all) - 1; i >= 2; i-- {
		shown = append(shown, all[i])
	}
	state := State{
		Lightbulb: Light{On: false, Flips: 4},
		Messages:  shown,
		Regions: []Card{
			card("ams", map[string]int{"A": 2}),
			card("iad", nil),
			card("syd", map[string]int{"A": 1, "B": 1}),
		},
	}
	var f Final
	for _, inst := range []string{"ams-1", "ams-2", "syd-1"} {
		f.Snapshots = append(f.Snapshots, Snapshot{Instance: inst, Region: inst[:3], State: cloneState(state),
			Rooms: []RoomCount{{Room: "home", Viewers: 2, Regions: map[string]int{"ams": 1, "syd": 2}}}})
	}
	f.Held = []HeldStream{
		{ID: 1, User: "A", Region: "ams", Instance: "ams-1", LastTabs: 3},
		{ID: 2, User: "A", Region: "ams", Instance: "ams-2", LastTabs: 3},
		{ID: 3, User: "A", Region: "syd", Instance: "syd-1", LastTabs: 3},
		{ID: 4, User: "B", Region: "syd", Instance: "syd-1", LastTabs: 1},
	}
	f.Probes = []SetProbe{{Via: "ams-1", On: true, Status: 200}, {Via: "ams-1", On: false, Status: 200}}
	return ops, f
}

func cloneState(s State) State {
	b, _ := json.Marshal(s)
	var c State
	json.Unmarshal(b, &c)
	return c
}

func TestCheckCleanRun(t *testing.T) {
	ops, f := cleanRun()
	if vs := Check(ops, f); len(vs) != 0 {
		t.Fatalf("clean run: %d violations: %v", len(vs), vs)
	}
}

func TestCheckReports(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(ops []Op, f *Final) []Op
		inv    string
		want   string
	}{
		{"lost acknowledged message", func(ops []Op, f *Final) []Op {
			// The newest message is missing on one instance only.
			s := &f.Snapshots[1].State
			s.Messages = s.Messages[1:]
			return ops
		}, InvMessages, "lost 1 acknowledged"},
		{"lost message everywhere", func(ops []Op, f *Final) []Op {
			for i := range f.Snapshots {
				s := &f.Snapshots[i].State
				s.Messages = append(s.Messages[:3:3], s.Messages[4:]...)
			}
			return ops
		}, InvMessages, "lost 1 acknowledged"},
		{"message shown twice", func(ops []Op, f *Final) []Op {
			for i := range f.Snapshots {
				s := &f.Snapshots[i].State
				s.Messages[1] = s.Messages[0]
			}
			return ops
		}, InvMessages, "twice"},
		{"message nobody posted", func(ops []Op, f *Final) []Op {
			for i := range f.Snapshots {
				f.Snapshots[i].State.Messages[0] = msg(99, "iad")
			}
			return ops
		}, InvMessages, "no client posted"},
		{"double-counted flip", func(ops []Op, f *Final) []Op {
			for i := range f.Snapshots {
				f.Snapshots[i].State.Lightbulb.Flips = 5
			}
			return ops
		}, InvFlips, "double-counted 1"},
		{"lost flip", func(ops []Op, f *Final) []Op {
			for i := range f.Snapshots {
				f.Snapshots[i].State.Lightbulb.Flips = 2
			}
			return ops
		}, InvFlips, "lost 1"},
		{"ghost tab", func(ops []Op, f *Final) []Op {
			// Stream 4 was closed by the checker, but syd-1 still lists B.
			f.Held = f.Held[:3]
			for i := range f.Snapshots {
				if f.Snapshots[i].Instance != "syd-1" {
					f.Snapshots[i].State.Regions[2] = card("syd", map[string]int{"A": 1})
				}
			}
			return append(ops, Op{Kind: KindClose, Stream: 4})
		}, InvPresence, "syd-1: ghost: user B in syd has 1 tabs, 0 streams"},
		{"missing tab", func(ops []Op, f *Final) []Op {
			f.Snapshots[0].State.Regions[0] = card("ams", map[string]int{"A": 1})
			return ops
		}, InvPresence, "ams-1: missing: user A in ams has 1 tabs, 2 streams"},
		{"wrong tabs event", func(ops []Op, f *Final) []Op {
			f.Held[0].LastTabs = 2
			return ops
		}, InvTabs, "stream 1 (user A on ams-1): last tabs event 2, user has 3"},
		{"member counted per tab", func(ops []Op, f *Final) []Op {
			f.Snapshots[1].Rooms[0].Viewers = 4
			return ops
		}, InvMembers, "ams-2: /api/rooms lists [{home 4 map[ams:1 syd:2]}], the open streams make [{home 2 map[ams:1 syd:2]}]"},
		{"member of a dead instance kept", func(ops []Op, f *Final) []Op {
			f.Held = f.Held[:1] // only A's stream on ams-1 is left
			f.Held[0].LastTabs = 1
			for i := range f.Snapshots {
				f.Snapshots[i].State.Regions = []Card{card("ams", map[string]int{"A": 1})}
			}
			return ops
		}, InvMembers, "ams-1: /api/rooms lists [{home 2 map[ams:1 syd:2]}], the open streams make [{home 1 map[ams:1]}]"},
		{"set not honoured", func(ops []Op, f *Final) []Op {
			f.Probes[1].NotConverged = []string{"syd-1: on=true"}
			return ops
		}, InvSet, "syd-1: on=true"},
		{"regions disagree", func(ops []Op, f *Final) []Op {
			f.Snapshots[2].State.Lightbulb.On = true
			return ops
		}, InvAgreement, "syd-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ops, f := cleanRun()
			ops = tc.break_(ops, &f)
			vs := Check(ops, f)
			found := false
			for _, v := range vs {
				if v.Invariant == tc.inv && strings.Contains(v.Detail, tc.want) {
					found = true
				}
			}
			if !found {
				t.Fatalf("want a %s violation mentioning %q; got %v", tc.inv, tc.want, vs)
			}
		})
	}
}

// An ambiguous hi may show or not; an acknowledged one older than the
// tenth shown may drop off the feed.
func TestCheckAllowsAmbiguousAndOld(t *testing.T) {
	ops, f := cleanRun()
	extra := msg(13, "syd")
	ops = append(ops, Op{Kind: KindHi, Arg: extra.Text, Status: 503})
	for i := range f.Snapshots {
		s := &f.Snapshots[i].State
		s.Messages = append([]Message{extra}, s.Messages[:9]...)
	}
	if vs := Check(ops, f); len(vs) != 0 {
		t.Fatalf("%d violations: %v", len(vs), vs)
	}
}
