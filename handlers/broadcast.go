package handlers

import (
	"bytes"
	"context"
	"html/template"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"globalpresence/bus"
	"globalpresence/internal/keylock"
	"globalpresence/internal/shrink"
	"globalpresence/presence"
)

// Broadcaster turns store changes into stream events: it takes a snapshot of
// the changed parts of a room once, renders them once in each format its
// streams use, keeps the latest render of every part for new connections'
// snapshots, and publishes them to the room's topics. Only rooms with
// connections here are rendered.
type Broadcaster struct {
	store  presence.Store
	em     *bus.Emitter
	r      renderer
	region string
	large  int
	log    *slog.Logger
	coal   *presence.Coalescer

	// renderLocks serialise a room's read-then-render, so an older read of
	// it is never published after a newer one. Per room: a room whose read
	// takes a store round trip (its first, with Redis) must not hold up the
	// others; one lock for all queued thousands of opens behind it at
	// 3,000 a second. Lock order: a render lock, then mu.
	renderLocks keylock.Locks
	mu          sync.Mutex
	rooms       map[string]*roomState
	// everyRoom counts changes to every room (Change.Room ""), which reach
	// only the rooms registered when they come: a room being warmed
	// meanwhile looks again once registered.
	everyRoom uint64

	stop chan struct{}
	done chan struct{}

	changes, flushes, published atomic.Uint64
}

// BroadcastStats count the broadcaster's work: changes heard, re-renders
// (flushes) after coalescing, and parts published because they changed.
type BroadcastStats struct {
	Changes, Flushes, Published uint64
}

// Rooms is how many rooms the broadcaster holds: those with streams here.
func (b *Broadcaster) Rooms() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.rooms)
}

// Presence is a room's presence as last rendered, and user's tab count as
// their streams are told it, if the room has streams here: what a request
// about the room can be served without grouping every tab again. The
// regions must not be modified.
func (b *Broadcaster) Presence(room string, user presence.UserID) ([]presence.RegionView, int, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	rs := b.rooms[room]
	if rs == nil {
		return nil, 0, false
	}
	if us := rs.users[user]; us != nil {
		return rs.regions, rs.tabsOf(user, us), true
	}
	return rs.regions, rs.counts[user], true
}

// Stats returns the counters so far.
func (b *Broadcaster) Stats() BroadcastStats {
	return BroadcastStats{Changes: b.changes.Load(), Flushes: b.flushes.Load(), Published: b.published.Load()}
}

type roomState struct {
	conns int
	// watch counts the connections of each format: only those formats are
	// rendered, and a format's first connection renders it from the state
	// below.
	watch  [numFormats]int
	parts  [numParts]framed   // latest render of each part
	msgs   messageRenders     // fragments of the messages in that render
	shown  []presence.Message // the messages in that render; nil before the first
	counts map[presence.UserID]int
	users  map[presence.UserID]*userState // users with connections here
	// regions is the presence in that render, whole (cards are cut down
	// only when rendered): what the room's page and JSON show.
	regions []presence.RegionView
	status  presence.Status
	light   presence.Light
	latency []presence.Latency
}

// watched is the set of formats the room's connections use.
func (rs *roomState) watched() formats {
	var fs formats
	for f, n := range rs.watch {
		if n > 0 {
			fs |= formatSet(Format(f))
		}
	}
	return fs
}

// userState keeps a user's count, not its render: three frames per user
// were a tenth of the heap at 19,000 streams, and a render costs less than
// the open that needs it.
type userState struct {
	conns int
	count int // as last published
}

// BroadcasterConfig tunes a Broadcaster; zero values take defaults.
type BroadcasterConfig struct {
	Region    string        // this app region
	Coalesce  time.Duration // least time between presence renders of a room (250 ms)
	Heartbeat time.Duration // comment sent to every stream this often (15 s)
	LargeRoom int           // above this many users in a region, cards show a sample (50)
	Log       *slog.Logger
}

const heartbeatTopic = "\x1fheartbeat"

// NewBroadcaster starts a broadcaster fed by store; Close stops it.
func NewBroadcaster(store presence.Store, em *bus.Emitter, tmpl *template.Template, cfg BroadcasterConfig) *Broadcaster {
	if cfg.Coalesce <= 0 {
		cfg.Coalesce = 250 * time.Millisecond
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 15 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.LargeRoom <= 0 {
		cfg.LargeRoom = 50
	}
	b := &Broadcaster{
		store:  store,
		em:     em,
		r:      renderer{tmpl: tmpl},
		region: cfg.Region,
		large:  cfg.LargeRoom,
		log:    cfg.Log,
		rooms:  make(map[string]*roomState),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	b.coal = presence.NewCoalescer(cfg.Coalesce, b.flush)
	store.Watch(b.changed)
	go b.heartbeat(cfg.Heartbeat)
	return b
}

// Close stops rendering and heartbeats.
func (b *Broadcaster) Close() {
	close(b.stop)
	<-b.done
	b.coal.Stop()
}

func roomTopic(room string, f Format) string {
	return room + "\x1f" + string('0'+rune(f))
}

func userTopic(room string, user presence.UserID, f Format) string {
	return roomTopic(room, f) + "\x1f" + string(user)
}

// Attach subscribes a connection of user to room and returns the snapshot it
// must be sent first: the latest render of every part, and the user's tabs.
func (b *Broadcaster) Attach(ctx context.Context, room string, user presence.UserID, f Format) (*bus.Subscriber, [][]byte, error) {
	b.mu.Lock()
	rs := b.rooms[room]
	// The connection must be counted on the state registered now: while mu
	// is released to warm, a Detach of the room's last connection may drop
	// what warm registered, so look again and warm again if it is gone.
	for rs == nil {
		b.mu.Unlock()
		if err := b.warm(ctx, room); err != nil {
			return nil, nil, err
		}
		b.mu.Lock()
		rs = b.rooms[room]
	}
	if rs.watch[f] == 0 {
		b.renderFormatLocked(rs, f)
	}
	rs.watch[f]++
	rs.conns++
	us := rs.users[user]
	if us == nil {
		us = &userState{}
		rs.users[user] = us
	}
	// Each attached connection is a tab about to join, so the count read
	// before it joined is raised to them rather than shown low for a moment;
	// the user's other connections are told first.
	us.conns++
	tabs := b.publishTabsLocked(room, b.r.only(rs.watched()), user, us, rs.tabsOf(user, us))
	sub := b.em.Subscribe(roomTopic(room, f), userTopic(room, user, f), heartbeatTopic)
	// Status first: a client knows whether what follows is live before
	// it shows it. Tabs last.
	snapshot := make([][]byte, 0, 6)
	for _, ev := range rs.parts {
		if frame := ev[f].Frame; frame != nil { // the badge lacks some parts
			snapshot = append(snapshot, frame)
		}
	}
	if frame := tabs[f].Frame; frame != nil {
		snapshot = append(snapshot, frame)
	}
	b.mu.Unlock()
	return sub, snapshot, nil
}

// warm renders a room that had no connections here, and registers it. It
// returns no state: by the time the caller re-takes mu, the room may have
// been dropped again, so the caller must look it up.
func (b *Broadcaster) warm(ctx context.Context, room string) error {
	mu := b.renderLocks.For(room)
	mu.Lock()
	defer mu.Unlock()
	b.mu.Lock()
	_, live := b.rooms[room]
	every := b.everyRoom
	b.mu.Unlock()
	if live {
		return nil
	}
	snap, err := b.store.Snapshot(ctx, room, presence.AllParts)
	if err != nil {
		return err
	}
	rs := &roomState{users: make(map[presence.UserID]*userState)}
	b.mu.Lock()
	b.applyLocked(room, rs, snap, presence.AllParts)
	b.rooms[room] = rs
	// A change to every room while this one was read (the store lost or
	// regained, say) passed it by: read it again, once registered.
	missed := b.everyRoom != every
	b.mu.Unlock()
	if missed {
		b.coal.Add(presence.Change{Room: room, Parts: presence.AllParts})
	}
	return nil
}

// renderFormatLocked renders every part of rs in format f, which its
// connections did not use until now, from what the last render showed.
// b.mu must be held.
func (b *Broadcaster) renderFormatLocked(rs *roomState, f Format) {
	r := b.r.only(formatSet(f))
	msgs, next, err := r.messages(rs.shown, rs.msgs)
	if err == nil {
		rs.msgs = next
	}
	for p, render := range [numParts]func() (framed, error){
		partStatus:   func() (framed, error) { return r.status(rs.status) },
		partLight:    func() (framed, error) { return r.light(rs.light) },
		partMessages: func() (framed, error) { return msgs, err },
		partLatency:  func() (framed, error) { return r.latency(rs.latency, b.region) },
		partRegions:  func() (framed, error) { return r.regions(rs.regions, rs.counts, b.region, b.large) },
	} {
		ev, err := render()
		if err != nil {
			b.log.Error("rendering", "part", partNames[p], "err", err)
			continue
		}
		rs.parts[p][f] = ev[f]
	}
}

// Detach undoes Attach; the room is forgotten with its last connection.
func (b *Broadcaster) Detach(room string, user presence.UserID, f Format, sub *bus.Subscriber) {
	sub.Close()
	b.mu.Lock()
	defer b.mu.Unlock()
	rs := b.rooms[room]
	if rs == nil {
		return
	}
	if us := rs.users[user]; us != nil {
		if us.conns--; us.conns == 0 {
			delete(rs.users, user)
		}
	}
	if rs.watch[f]--; rs.watch[f] == 0 {
		for p := range rs.parts { // no longer rendered: not kept either
			rs.parts[p][f] = bus.Event{}
		}
	}
	if rs.conns--; rs.conns == 0 {
		shrink.Delete(&b.rooms, room)
	}
}

// changed runs on the store's goroutine: hand the work to the coalescer.
func (b *Broadcaster) changed(c presence.Change) {
	b.changes.Add(1)
	if c.Room != "" {
		b.coal.Add(c)
		return
	}
	b.mu.Lock()
	b.everyRoom++
	rooms := make([]string, 0, len(b.rooms))
	for r := range b.rooms {
		rooms = append(rooms, r)
	}
	b.mu.Unlock()
	for _, r := range rooms {
		b.coal.Add(presence.Change{Room: r, Parts: c.Parts})
	}
}

// flush snapshots and publishes the changed parts of a room.
func (b *Broadcaster) flush(room string, parts presence.Part) {
	mu := b.renderLocks.For(room)
	mu.Lock()
	defer mu.Unlock()
	b.mu.Lock()
	_, live := b.rooms[room]
	b.mu.Unlock()
	if !live {
		return
	}
	b.flushes.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	snap, err := b.store.Snapshot(ctx, room, parts)
	cancel()
	if err != nil {
		b.log.Warn("reading room after a change", "room", room, "err", err)
		return
	}
	b.mu.Lock()
	if rs := b.rooms[room]; rs != nil {
		b.applyLocked(room, rs, snap, parts)
	}
	b.mu.Unlock()
}

// applyLocked renders the given parts of snap into rs, in the formats its
// connections use, and publishes those that changed. b.mu must be held.
func (b *Broadcaster) applyLocked(room string, rs *roomState, snap presence.Snapshot, parts presence.Part) {
	r := b.r.only(rs.watched())
	if parts&presence.PartStatus != 0 {
		rs.status = snap.Status
		b.update(room, rs, partStatus, func() (framed, error) { return r.status(snap.Status) })
	}
	if parts&presence.PartLight != 0 {
		rs.light = snap.Light
		b.update(room, rs, partLight, func() (framed, error) { return r.light(snap.Light) })
	}
	if parts&presence.PartMessages != 0 {
		b.showInPassing(room, rs, r, snap.Recent)
		b.update(room, rs, partMessages, func() (framed, error) {
			f, next, err := r.messages(snap.Messages, rs.msgs)
			if err == nil {
				rs.msgs, rs.shown = next, snap.Messages
			}
			return f, err
		})
	}
	if parts&presence.PartLatency != 0 {
		rs.latency = snap.Latency
		b.update(room, rs, partLatency, func() (framed, error) { return r.latency(snap.Latency, b.region) })
	}
	if parts&presence.PartPresence == 0 {
		return
	}
	counts := presence.TabCounts(snap.Regions)
	b.update(room, rs, partRegions, func() (framed, error) { return r.regions(snap.Regions, counts, b.region, b.large) })
	rs.counts, rs.regions = counts, snap.Regions
	for user, us := range rs.users {
		if n := rs.tabsOf(user, us); n != us.count {
			b.publishTabsLocked(room, r, user, us, n)
		}
	}
}

// tabsOf is a user's tab count as shown: what the store counted, but never
// fewer than their connections here, each of which is a tab (one attached
// but not yet joined would otherwise read as a dip).
func (rs *roomState) tabsOf(user presence.UserID, us *userState) int {
	return max(rs.counts[user], us.conns)
}

// showInPassing publishes, in order, the feed as it was when each message
// arrived that this room's streams never saw and that the new feed would
// hide: messages that arrive together after a gap (a region that was cut
// off catching up) are then each shown, not only the newest ten. b.mu must
// be held.
func (b *Broadcaster) showInPassing(room string, rs *roomState, r renderer, recent []presence.Message) {
	if rs.shown == nil {
		return // a room's first render: its history was not missed
	}
	seen := make(map[string]bool, len(rs.shown))
	for _, m := range rs.shown {
		seen[m.ID] = true
	}
	final := make(map[string]bool, presence.FeedLen)
	for _, m := range recent[:min(presence.FeedLen, len(recent))] {
		final[m.ID] = true
	}
	list := rs.shown
	for i := len(recent) - 1; i >= 0; i-- { // oldest first
		m := recent[i]
		if seen[m.ID] {
			continue
		}
		next := presence.MergeFeeds([][]presence.Message{list, {m}}, presence.FeedLen)
		if !slices.ContainsFunc(next, func(x presence.Message) bool { return x.ID == m.ID }) {
			continue // older than everything shown: not missed, superseded
		}
		list = next
		if final[m.ID] {
			continue // shown by the new feed anyway
		}
		ev, frags, err := r.messages(list, rs.msgs)
		if err != nil {
			b.log.Error("rendering", "part", evMessages, "err", err)
			return
		}
		rs.msgs = frags
		b.published.Add(1)
		for f := range numFormats {
			// A key of its own: a queued state of the feed must not
			// replace this one, or the message is missed again.
			ev[f].Key = evMessages + "\x1f" + m.ID
		}
		b.publish(room, "", ev)
	}
}

// publishTabsLocked renders user's tab count n with r and, if it changed,
// tells every connection of user. It returns the render for a new
// connection.
func (b *Broadcaster) publishTabsLocked(room string, r renderer, user presence.UserID, us *userState, n int) framed {
	tabs, err := r.tabs(user, n)
	if err != nil {
		b.log.Error("rendering tabs", "err", err)
		return framed{}
	}
	if n != us.count {
		us.count = n
		b.publish(room, user, tabs)
	}
	return tabs
}

// update renders one part and publishes it if it differs from the last
// render, so a change that alters nothing visible reaches nobody.
func (b *Broadcaster) update(room string, rs *roomState, p part, render func() (framed, error)) {
	ev, err := render()
	if err != nil {
		b.log.Error("rendering", "part", partNames[p], "err", err)
		return
	}
	if sameFrames(rs.parts[p], ev) {
		return
	}
	rs.parts[p] = ev
	b.published.Add(1)
	b.publish(room, "", ev)
}

func sameFrames(a, b framed) bool {
	for f := range numFormats {
		if !bytes.Equal(a[f].Frame, b[f].Frame) {
			return false
		}
	}
	return true
}

// publish sends a part to the room's streams in every format that has it,
// or only to user's streams when user is set.
func (b *Broadcaster) publish(room string, user presence.UserID, ev framed) {
	for f := range numFormats {
		if ev[f].Frame == nil {
			continue
		}
		if user != "" {
			b.em.Publish(userTopic(room, user, f), ev[f])
		} else {
			b.em.Publish(roomTopic(room, f), ev[f])
		}
	}
}

func (b *Broadcaster) heartbeat(every time.Duration) {
	defer close(b.done)
	t := time.NewTicker(every)
	defer t.Stop()
	ev := bus.Event{Key: "heartbeat", Frame: bus.Comment("heartbeat")}
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			b.em.Publish(heartbeatTopic, ev)
		}
	}
}
