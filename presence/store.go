package presence

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"sync"
)

// ErrUnavailable is returned by writes while the store cannot be reached.
var ErrUnavailable = errors.New("store unavailable")

var roomName = regexp.MustCompile(`^[A-Za-z0-9._~/-]{1,128}$`)

// ValidRoom reports whether name can name a room: 1-128 characters of
// A-Z a-z 0-9 . _ ~ - /, in segments between slashes none of which is
// empty, "." or "..". It becomes part of store keys and URLs, so it never
// holds a ':' or anything a path could be confused by.
func ValidRoom(name string) bool {
	if !roomName.MatchString(name) {
		return false
	}
	for seg := range strings.SplitSeq(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// Part names the independently updated parts of a room's page.
type Part uint8

// The parts of a room, as a bit set.
const (
	PartLight Part = 1 << iota
	PartMessages
	PartPresence
	PartLatency // propagation delays from other regions
	PartStatus  // whether what is served is live (same for every room)
	AllParts    = PartLight | PartMessages | PartPresence | PartLatency | PartStatus
)

// Change tells watchers that parts of a room may have changed; Snapshot has
// the new state. Room "" means
// every room (after a reconnect, when anything may have been missed).
type Change struct {
	Room  string
	Parts Part
}

// Snapshot is the whole state of a room.
type Snapshot struct {
	Room     string    `json:"room"`
	Light    Light     `json:"lightbulb"`
	Messages []Message `json:"messages"`
	// Recent is Messages and the older ones kept behind them, newest
	// first: what was missed during a gap, to show in passing.
	Recent  []Message    `json:"-"`
	Regions []RegionView `json:"regions"`
	Latency []Latency    `json:"latency"`
	Status  Status       `json:"status"`
}

// Status says whether a snapshot is live. While the store is lost, the
// last state read is served, marked as not live, so that pages can say
// "reconnecting…" instead of showing it as current.
type Status struct {
	Live   bool   `json:"live"`
	Reason string `json:"reason,omitempty"` // why not live, for the public: no details
}

// Store keeps the shared state of every room. A Store belongs to one app
// region and writes only records that region (or instance) owns; reads merge
// every region's records. Implementations: Memory (embedded, one process)
// and Redis (regional Redis/KeyDB).
type Store interface {
	// Switch toggles or sets the lightbulb and returns the merged result.
	Switch(ctx context.Context, room string, sw Switch) (Light, error)
	// Say appends a message to this region's feed and returns it as stored.
	Say(ctx context.Context, room string, p Post) (Message, error)
	// Join adds an open tab; joining twice with one tab ID is a no-op.
	Join(ctx context.Context, room string, t Tab) error
	// Leave removes a tab; leaving an unknown tab is a no-op.
	Leave(ctx context.Context, room string, tabID string) error
	// Snapshot reads a room's merged state. Only the given parts need be
	// fresh: a change to one part is not worth re-reading the others (the
	// rest may be empty, or as last read).
	Snapshot(ctx context.Context, room string, parts Part) (Snapshot, error)
	// Watch registers fn to hear about changes from every region. fn runs on
	// the store's goroutine and must not block.
	Watch(fn func(Change))
	// Ready reports whether the store is connected and receiving changes.
	Ready(ctx context.Context) error
	// Close releases the store; this instance's tabs leave.
	Close() error
}

// watchers is the Watch half of a Store, shared by the implementations.
type watchers struct {
	mu  sync.Mutex
	fns []func(Change)
}

// Watch implements Store.
func (w *watchers) Watch(fn func(Change)) {
	w.mu.Lock()
	w.fns = append(w.fns, fn)
	w.mu.Unlock()
}

func (w *watchers) notify(c Change) {
	w.mu.Lock()
	fns := w.fns
	w.mu.Unlock()
	for _, fn := range fns {
		fn(c)
	}
}
