// Package webhook posts the global membership transitions that
// presence.Members reports to a site's endpoint: debounced, deduplicated
// across instances, signed, batched at most once a second, and retried in
// order while the endpoint fails.
package webhook

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"

	"globalpresence/presence"
)

// Event is one transition as the endpoint receives it.
type Event struct {
	ID     string    `json:"id"`
	Type   string    `json:"type"`
	Room   string    `json:"room"`
	User   string    `json:"user,omitempty"`   // member events only
	Region string    `json:"region,omitempty"` // member events only
	At     time.Time `json:"at"`
	gone   bool      // a removal no reload can undo: not debounced
}

// batch is a request's body; Timestamp repeats X-Presence-Timestamp inside
// what is signed, so a receiver can bind the two.
type batch struct {
	Timestamp int64   `json:"timestamp"`
	Events    []Event `json:"events"`
}

// newEvent turns a transition seen at now into an event. Its ID is what
// every instance computes for the same transition: its type, room, user,
// the instance that caused it, and the debounce window it fell in (after
// debouncing, two transitions of one type and key are at least a window
// apart), so the store guard and receivers can drop copies.
func newEvent(e presence.MemberEvent, now time.Time, window time.Duration) Event {
	ev := Event{Type: string(e.Type), Room: e.Room, At: now.UTC(), gone: e.Gone}
	if e.Type == presence.MemberAdded || e.Type == presence.MemberRemoved {
		ev.User, ev.Region = string(e.User), e.Region
	}
	slot := now.UnixMilli() / max(window.Milliseconds(), 1)
	sum := sha256.Sum256([]byte(ev.Type + "|" + ev.Room + "|" + ev.User + "|" + e.Inst + "|" + strconv.FormatInt(slot, 10)))
	ev.ID = hex.EncodeToString(sum[:16])
	return ev
}
