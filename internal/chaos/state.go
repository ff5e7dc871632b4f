package chaos

import (
	"strconv"
	"strings"
	"time"
)

// State is the part of GET /api/state the invariants are about.
type State struct {
	Lightbulb Light     `json:"lightbulb"`
	Messages  []Message `json:"messages"`
	Regions   []Card    `json:"regions"`
}

// Light is the lightbulb as the API shows it.
type Light struct {
	On    bool   `json:"on"`
	Flips uint64 `json:"flips"`
}

// Message is one feed entry as /hi answers it and /api/state lists it.
type Message struct {
	ID   string    `json:"id"`
	Text string    `json:"text"`
	At   time.Time `json:"at"`
	HLC  *uint64   `json:"hlc,omitempty"` // if the API ever shows the clock
}

// RoomCount is one occupied room as GET /api/rooms lists it.
type RoomCount struct {
	Room    string         `json:"room"`
	Viewers int            `json:"viewers"`
	Regions map[string]int `json:"regions"`
}

// Card is one region's presence card.
type Card struct {
	Region string `json:"region"`
	Users  []struct {
		ID   string `json:"id"`
		Tabs int    `json:"tabs"`
	} `json:"users"`
}

// orderKey is the clock the app orders the feed by: the hlc when the API
// gives it, else the 16 hex digits an id starts with (the app writes the
// hlc there), else the time in milliseconds, shifted like an hlc.
func (m Message) orderKey() uint64 {
	if m.HLC != nil {
		return *m.HLC
	}
	if head, _, ok := strings.Cut(m.ID, "-"); ok && len(head) == 16 {
		if v, err := strconv.ParseUint(head, 16, 64); err == nil {
			return v
		}
	}
	return uint64(m.At.UnixMilli()) << 16
}

// newer orders messages as the feed shows them: by clock, then by id.
func newer(a, b Message) bool {
	ka, kb := a.orderKey(), b.orderKey()
	if ka != kb {
		return ka > kb
	}
	return a.ID > b.ID
}
