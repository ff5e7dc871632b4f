package chaos

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
)

// Invariant names, as violations report them.
const (
	InvFlips     = "flips"     // every acknowledged toggle counted exactly once
	InvSet       = "set"       // an explicit set is honoured everywhere
	InvMessages  = "messages"  // no acknowledged message lost; one feed everywhere
	InvPresence  = "presence"  // the cards list exactly the open streams
	InvTabs      = "tabs"      // each stream's tab count is its user's open streams
	InvAgreement = "agreement" // one lightbulb everywhere
	InvMembers   = "members"   // every app's /api/rooms counts the open streams' distinct users
	InvReadable  = "readable"  // every app answers /api/state and /api/rooms after healing
)

// feedSize is how many messages the app shows.
const feedSize = 10

// Violation is one broken invariant, with what was seen.
type Violation struct {
	Invariant string `json:"invariant"`
	Detail    string `json:"detail"`
}

func (v Violation) String() string { return "[" + v.Invariant + "] " + v.Detail }

// Snapshot is one app's /api/state and /api/rooms at the end of the run.
type Snapshot struct {
	Instance string      `json:"instance"`
	Region   string      `json:"region"`
	State    State       `json:"state"`
	Rooms    []RoomCount `json:"rooms"`
	Err      string      `json:"err,omitempty"` // the state could not be read
}

// HeldStream is a stream the checker still holds open at the end.
type HeldStream struct {
	ID       int    `json:"id"`
	User     string `json:"user"`
	Region   string `json:"region"` // of the instance serving it
	Instance string `json:"instance"`
	LastTabs int    `json:"last_tabs"` // the last tabs event; -1 if none came
}

// SetProbe is one explicit set of the quiet final phase and whether every
// app showed it in time.
type SetProbe struct {
	Via          string   `json:"via"`
	On           bool     `json:"on"`
	Status       int      `json:"status"`
	Err          string   `json:"err,omitempty"`
	NotConverged []string `json:"not_converged,omitempty"` // "instance: what it showed"
}

// Final is everything observed after the run was healed and settled.
type Final struct {
	Snapshots []Snapshot   `json:"snapshots"`
	Held      []HeldStream `json:"held"`
	Probes    []SetProbe   `json:"probes"`
}

// Check holds the final observations against what clients were told in
// ops and returns every violation, in invariant order.
func Check(ops []Op, f Final) []Violation {
	var vs []Violation
	add := func(inv, format string, args ...any) {
		vs = append(vs, Violation{inv, fmt.Sprintf(format, args...)})
	}
	var good []Snapshot
	for _, s := range f.Snapshots {
		if s.Err != "" {
			add(InvReadable, "%s: %s", s.Instance, s.Err)
			continue
		}
		good = append(good, s)
	}
	checkFlips(ops, good, add)
	for _, p := range f.Probes {
		switch {
		case p.Err != "" || p.Status != http.StatusOK:
			add(InvSet, "set on=%v via %s not acknowledged in the quiet phase: status %d %s", p.On, p.Via, p.Status, p.Err)
		case len(p.NotConverged) > 0:
			add(InvSet, "set on=%v via %s not shown within the deadline by: %s", p.On, p.Via, strings.Join(p.NotConverged, "; "))
		}
	}
	checkMessages(ops, good, add)
	checkPresence(f.Held, good, add)
	checkMembers(f.Held, good, add)
	checkAgreement(good, add)
	return vs
}

type addFunc func(inv, format string, args ...any)

func checkFlips(ops []Op, snaps []Snapshot, add addFunc) {
	var acked, ambiguous uint64
	for _, o := range ops {
		if o.Kind != KindToggle {
			continue
		}
		switch o.Outcome(http.StatusOK) {
		case Acked:
			acked++
		case Ambiguous:
			ambiguous++
		}
	}
	for _, s := range snaps {
		if n := s.State.Lightbulb.Flips; n < acked {
			add(InvFlips, "%s: flips=%d < %d acknowledged toggles (lost %d)", s.Instance, n, acked, acked-n)
		} else if n > acked+ambiguous {
			add(InvFlips, "%s: flips=%d > %d acknowledged + %d ambiguous toggles (double-counted %d)",
				s.Instance, n, acked, ambiguous, n-acked-ambiguous)
		}
	}
}

func checkAgreement(snaps []Snapshot, add addFunc) {
	for _, s := range snaps[min(1, len(snaps)):] {
		ref := snaps[0]
		if s.State.Lightbulb != ref.State.Lightbulb {
			add(InvAgreement, "lightbulb %s %+v != %s %+v", s.Instance, s.State.Lightbulb, ref.Instance, ref.State.Lightbulb)
		}
	}
}

// checkMessages: every app shows the same feed, each id once, newest
// first; every acknowledged message newer than the oldest one shown is
// shown (all of them while fewer than feedSize are); nothing is shown that
// no client posted.
func checkMessages(ops []Op, snaps []Snapshot, add addFunc) {
	acked := map[string]Message{}
	posted := map[string]bool{} // texts acknowledged or ambiguous
	for _, o := range ops {
		if o.Kind != KindHi {
			continue
		}
		switch o.Outcome(http.StatusCreated) {
		case Acked:
			var m Message
			if err := json.Unmarshal([]byte(o.Body), &m); err != nil || m.ID == "" {
				add(InvMessages, "op %d: acknowledged hi with an unreadable body %q", o.Seq, o.Body)
				continue
			}
			acked[m.ID] = m
			posted[o.Arg] = true
		case Ambiguous:
			posted[o.Arg] = true
		}
	}
	var ref []string
	for i, s := range snaps {
		ms := s.State.Messages
		ids := make([]string, len(ms))
		for j, m := range ms {
			ids[j] = m.ID
		}
		if i == 0 {
			ref = ids
		} else if !slices.Equal(ids, ref) {
			add(InvMessages, "%s shows %v, %s shows %v", s.Instance, ids, snaps[0].Instance, ref)
		}
		if len(ms) > feedSize {
			add(InvMessages, "%s shows %d messages, more than %d", s.Instance, len(ms), feedSize)
		}
		seen := map[string]bool{}
		for j, m := range ms {
			if seen[m.ID] {
				add(InvMessages, "%s shows message %s twice", s.Instance, m.ID)
			}
			seen[m.ID] = true
			if j > 0 && !newer(ms[j-1], m) {
				add(InvMessages, "%s shows %s before %s, out of order", s.Instance, ms[j-1].ID, m.ID)
			}
			if _, ok := acked[m.ID]; !ok && !posted[m.Text] {
				add(InvMessages, "%s shows message %s (%q) that no client posted", s.Instance, m.ID, m.Text)
			}
		}
		// Missing newer than the oldest shown: lost. Missing older while
		// the feed is short: the feed should have shown them.
		var lost, short []string
		for id, m := range acked {
			switch {
			case seen[id]:
			case len(ms) > 0 && newer(m, ms[len(ms)-1]):
				lost = append(lost, fmt.Sprintf("%s (%q)", id, m.Text))
			case len(ms) < feedSize:
				short = append(short, fmt.Sprintf("%s (%q)", id, m.Text))
			}
		}
		if len(lost) > 0 {
			sort.Strings(lost)
			add(InvMessages, "%s lost %d acknowledged messages newer than its oldest shown: %s",
				s.Instance, len(lost), strings.Join(lost, ", "))
		}
		if len(short) > 0 {
			sort.Strings(short)
			add(InvMessages, "%s shows %d messages but not %d older acknowledged ones: %s",
				s.Instance, len(ms), len(short), strings.Join(short, ", "))
		}
	}
}

type regionUser struct{ region, user string }

// checkPresence: every app's cards list exactly the held streams (per
// region and user, as tab counts), and every held stream's last tabs event
// counts its user's held streams in all regions.
func checkPresence(held []HeldStream, snaps []Snapshot, add addFunc) {
	want := map[regionUser]int{}
	perUser := map[string]int{}
	for _, h := range held {
		want[regionUser{h.Region, h.User}]++
		perUser[h.User]++
	}
	for _, s := range snaps {
		got := map[regionUser]int{}
		for _, c := range s.State.Regions {
			for _, u := range c.Users {
				got[regionUser{c.Region, u.ID}] += u.Tabs
			}
		}
		var keys []regionUser
		for k := range want {
			keys = append(keys, k)
		}
		for k := range got {
			if _, ok := want[k]; !ok {
				keys = append(keys, k)
			}
		}
		sort.Slice(keys, func(i, j int) bool {
			if keys[i].region != keys[j].region {
				return keys[i].region < keys[j].region
			}
			return keys[i].user < keys[j].user
		})
		for _, k := range keys {
			switch g, w := got[k], want[k]; {
			case g > w:
				add(InvPresence, "%s: ghost: user %s in %s has %d tabs, %d streams are open", s.Instance, k.user, k.region, g, w)
			case g < w:
				add(InvPresence, "%s: missing: user %s in %s has %d tabs, %d streams are open", s.Instance, k.user, k.region, g, w)
			}
		}
	}
	for _, h := range held {
		if w := perUser[h.User]; h.LastTabs != w {
			add(InvTabs, "stream %d (user %s on %s): last tabs event %d, user has %d open streams", h.ID, h.User, h.Instance, h.LastTabs, w)
		}
	}
}

// streamsRoom is the room every checker stream is in.
const streamsRoom = "home"

// checkMembers: every app's /api/rooms lists the streams' room, if any
// stream is open, with its distinct users in all and per region.
func checkMembers(held []HeldStream, snaps []Snapshot, add addFunc) {
	users := map[string]bool{}
	perRegion := map[string]map[string]bool{}
	for _, h := range held {
		users[h.User] = true
		if perRegion[h.Region] == nil {
			perRegion[h.Region] = map[string]bool{}
		}
		perRegion[h.Region][h.User] = true
	}
	want := []RoomCount{}
	if len(users) > 0 {
		rc := RoomCount{Room: streamsRoom, Viewers: len(users), Regions: map[string]int{}}
		for g, us := range perRegion {
			rc.Regions[g] = len(us)
		}
		want = append(want, rc)
	}
	for _, s := range snaps {
		if got := fmt.Sprint(s.Rooms); got != fmt.Sprint(want) {
			add(InvMembers, "%s: /api/rooms lists %s, the open streams make %s", s.Instance, got, fmt.Sprint(want))
		}
	}
}
