package presence

import (
	"context"
	"strings"
	"sync"

	"globalpresence/internal/shrink"
)

// Memory is the embedded Store: every room in this process, for running with
// no external service. It keeps the same per-region records as the Redis
// store, so the merge logic is exercised identically.
type Memory struct {
	region string
	clock  Clock
	watchers
	*Members // fed by Join and Leave: one process is one instance

	mu    sync.Mutex
	rooms map[string]*memRoom
	refs  tabRefs
}

// memRoom's tabs are held by pointer: most rooms have a few, and a map's
// smallest table has eight slots, which for Tab values was a kilobyte a room.
type memRoom struct {
	content
	tabs map[string]*Tab
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty embedded store for an app region.
func NewMemory(region string) *Memory {
	m := &Memory{region: region, rooms: make(map[string]*memRoom), Members: newMembers(), refs: make(tabRefs)}
	m.prime() // one instance: nothing to load
	return m
}

func (m *Memory) room(name string) *memRoom {
	r := m.rooms[name]
	if r == nil {
		r = &memRoom{content: newContent(), tabs: make(map[string]*Tab)}
		m.rooms[name] = r
	}
	return r
}

// Switch implements Store.
func (m *Memory) Switch(_ context.Context, room string, sw Switch) (Light, error) {
	m.mu.Lock()
	r := m.room(room)
	r.lights[m.region] = ApplySwitch(r.lights, m.region, sw, m.clock.Now())
	l := FoldLight(r.lights)
	m.mu.Unlock()
	m.notify(Change{Room: room, Parts: PartLight})
	return l, nil
}

// Say implements Store.
func (m *Memory) Say(_ context.Context, room string, p Post) (Message, error) {
	msg := NewMessage(m.clock.Now(), m.region, p)
	m.mu.Lock()
	r := m.room(room)
	r.feeds[m.region] = AddToFeed(r.feeds[m.region], msg, feedKeep)
	m.mu.Unlock()
	m.notify(Change{Room: room, Parts: PartMessages})
	return msg, nil
}

// Join implements Store.
func (m *Memory) Join(_ context.Context, room string, t Tab) error {
	m.mu.Lock()
	r := m.room(room)
	old := r.tabs[t.ID]
	r.tabs[t.ID] = &t
	m.count(room, t, true)
	if old != nil {
		m.count(room, *old, false)
	}
	m.mu.Unlock()
	m.notify(Change{Room: room, Parts: PartPresence})
	return nil
}

// Leave implements Store.
func (m *Memory) Leave(_ context.Context, room string, tabID string) error {
	m.mu.Lock()
	r := m.rooms[room]
	ok := false
	if r != nil {
		if t := r.tabs[tabID]; t != nil {
			ok = true
			shrink.Delete(&r.tabs, tabID)
			m.count(room, *t, false)
		}
		if len(r.tabs) == 0 && len(r.lights) == 0 && len(r.feeds) == 0 {
			shrink.Delete(&m.rooms, room) // nothing left to keep: an empty room costs nothing
		}
	}
	m.mu.Unlock()
	if ok {
		m.notify(Change{Room: room, Parts: PartPresence})
	}
	return nil
}

// count adds (or removes) a tab to its membership, which begins with the
// first tab and ends with the last. m.mu must be held.
func (m *Memory) count(room string, t Tab, add bool) {
	switch {
	case add && m.refs.add(room, t):
		m.set("", member{room, t.User}, t.Region)
	case !add && m.refs.remove(room, t):
		m.set("", member{room, t.User}, "")
	}
}

// Snapshot implements Store.
func (m *Memory) Snapshot(_ context.Context, room string, parts Part) (Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	snap := Snapshot{Room: room, Messages: []Message{}, Regions: []RegionView{}, Latency: []Latency{}, Status: Status{Live: true}}
	r := m.rooms[room]
	if r == nil {
		return snap, nil
	}
	r.fill(&snap, parts)
	if parts&PartPresence != 0 {
		tabs := make([]Tab, 0, len(r.tabs))
		for _, t := range r.tabs {
			tabs = append(tabs, *t)
		}
		snap.Regions = GroupTabs(tabs)
	}
	return snap, nil
}

// Compact copies every room the store keeps, all at once, so that what
// outlived a burst of traffic can give back the pages it was scattered over
// (see compacted). It is meant for the end of a burst: it copies every tab
// and message.
func (m *Memory) Compact() {
	m.mu.Lock()
	defer m.mu.Unlock()
	rooms := make(map[string]*memRoom, len(m.rooms))
	for name, r := range m.rooms {
		tabs := make(map[string]*Tab, len(r.tabs))
		for _, t := range r.tabs {
			c := t.compacted()
			tabs[c.ID] = &c
		}
		rooms[strings.Clone(name)] = &memRoom{content: r.content.compacted(), tabs: tabs}
	}
	m.rooms = rooms
}

// Rooms is how many rooms are kept: those with tabs, a lightbulb record or
// messages.
func (m *Memory) Rooms() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.rooms)
}

// Ready implements Store: memory is always ready.
func (m *Memory) Ready(context.Context) error { return nil }

// Close implements Store: the process's tabs leave with it.
func (m *Memory) Close() error {
	m.mu.Lock()
	var rooms []string
	for name, r := range m.rooms {
		if len(r.tabs) > 0 {
			clear(r.tabs)
			rooms = append(rooms, name)
		}
	}
	clear(m.refs)
	m.replace("", nil)
	m.mu.Unlock()
	for _, name := range rooms {
		m.notify(Change{Room: name, Parts: PartPresence})
	}
	return nil
}
