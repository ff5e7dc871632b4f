package presence

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// This file is how a Redis store follows every other instance: one
// subscription, one worker goroutine applying what arrives, re-reads on any
// doubt, heartbeats, and watching the regional node's health.

func (s *Redis) enqueue(fn func()) {
	select {
	case s.work <- fn:
	default:
		// Dropping a hint is safe only if a full re-read follows.
		s.overflow.Store(true)
	}
}

func (s *Redis) worker() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case fn := <-s.work:
			fn()
		}
		if s.overflow.Swap(false) {
			s.resyncAll()
		}
	}
}

// enableNotifications turns on the keyspace events this store needs on the
// node it subscribes to, keeping any flags already set. A server that
// refuses CONFIG (managed Redis) must have them in its configuration.
func (s *Redis) enableNotifications(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cur, err := s.read.Do(ctx, s.read.B().ConfigGet().Parameter("notify-keyspace-events").Build()).AsStrMap()
	flags := cur["notify-keyspace-events"]
	missing := missingFlags(flags, keyspaceFlags)
	if err == nil && missing == "" {
		return
	}
	if err == nil {
		err = s.read.Do(ctx, s.read.B().ConfigSet().ParameterValue().ParameterValue("notify-keyspace-events", flags+missing).Build()).Error()
		if err == nil {
			return
		}
	}
	if _, refused := rueidis.IsRedisErr(err); !refused {
		return // not reachable yet: retried after every (re)subscription
	}
	s.log.Error("cannot enable keyspace notifications: add this line to the store's configuration",
		"setting", "notify-keyspace-events "+keyspaceFlags, "err", err)
}

// missingFlags returns the flags of need not implied by have ('A' is every
// event class).
func missingFlags(have, need string) string {
	var out strings.Builder
	for _, f := range need {
		if strings.ContainsRune(have, f) || (f != 'K' && f != 'E' && strings.ContainsRune(have, 'A')) {
			continue
		}
		out.WriteRune(f)
	}
	return out.String()
}

// subscribe follows eventsChannel and the keyspace events of our keys for
// the life of the store. rueidis re-subscribes by itself after a reconnect;
// every confirmation is followed by a full re-read, since anything published
// while disconnected is lost.
func (s *Redis) subscribe() {
	defer s.wg.Done()
	var confirmed atomic.Int32
	ctx := rueidis.WithOnSubscriptionHook(s.ctx, func(sub rueidis.PubSubSubscription) {
		if sub.Kind != "psubscribe" || confirmed.Add(1)%3 != 0 {
			return // wait until every pattern is confirmed
		}
		s.subscribes.Add(1)
		s.enqueue(func() { s.enableNotifications(s.ctx) })
		// Anything published while unsubscribed is lost: not ready until
		// everything is re-read (and written back, if the node restarted).
		s.mu.Lock()
		s.health.subscribed = true
		s.health.doubt("subscribed to store changes", false)
		s.mu.Unlock()
	})
	keyspace := fmt.Sprintf("__keyspace@%d__:%s*", s.db, keyPrefix)
	for s.ctx.Err() == nil {
		err := s.read.Receive(ctx, s.read.B().Psubscribe().Pattern(eventsChannel, keyspace, s.pingChannel()).Build(), func(m rueidis.PubSubMessage) {
			s.enqueue(func() { s.handle(m) })
		})
		s.markUnsubscribed(err)
		select {
		case <-s.ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (s *Redis) markUnsubscribed(err error) {
	s.mu.Lock()
	s.health.subscribed = false
	if err != nil {
		s.health.err = err
	}
	s.mu.Unlock()
}

// handle applies one pub/sub message, on the worker goroutine.
func (s *Redis) handle(m rueidis.PubSubMessage) {
	if m.Channel == s.pingChannel() {
		s.mu.Lock()
		s.health.echoAt = time.Now()
		s.mu.Unlock()
		return
	}
	if m.Channel != eventsChannel {
		s.handleKeyspace(strings.TrimPrefix(m.Channel, fmt.Sprintf("__keyspace@%d__:", s.db)), m.Message)
		return
	}
	var w wire
	if err := json.Unmarshal([]byte(m.Message), &w); err != nil || !ValidRoom(w.Room) {
		s.log.Warn("ignoring a malformed store event", "message", m.Message)
		return
	}
	s.lat.observe(w.Region, w.Wall, s.now())
	switch w.Type {
	case "light", "say":
		s.applyContent(w)
	case "join", "leave":
		s.applyDelta(w)
	case "beat":
		s.beatSeen(w)
	case "bye":
		s.dropInstance(w.Room, w.Inst)
	}
}

func (s *Redis) handleKeyspace(key, event string) {
	room, kind, owner, ok := parseKey(key)
	if !ok || (event != "del" && event != "expired") {
		return
	}
	switch kind {
	case "tabs":
		// A crashed instance's tabs expire: everyone drops them at once,
		// unless this instance cannot tell a crash from its own outage.
		if s.trustAbsence() {
			s.dropInstance(room, owner)
		}
	case "light", "feed":
		// Deleted behind our back (FLUSHALL or DEL by hand): write back
		// what this instance holds.
		if !s.tracked(room) {
			return
		}
		ctx, cancel := context.WithTimeout(s.ctx, writeTimeout)
		defer cancel()
		if err := s.restoreContent(ctx, room); err != nil {
			s.log.Warn("writing back a room the store lost", "room", room, "err", err)
		}
	}
}

func (s *Redis) tracked(room string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rooms[room] != nil
}

// applyContent keeps a lightbulb switch or a message announced by a region,
// if the room is tracked here (nobody here needs it otherwise); its clock
// advances ours either way.
func (s *Redis) applyContent(w wire) {
	switch {
	case w.Type == "say" && w.Msg != nil:
		s.learn(w.Room, content{feeds: map[string][]Message{w.Region: {*w.Msg}}}, PartMessages|PartLatency)
	case w.Type == "light" && w.Rec != nil:
		s.learn(w.Room, content{lights: map[string]LightRecord{w.Region: w.record()}}, PartLight|PartLatency)
	default:
		s.refreshContent(w.Room) // an announcement without its data
	}
}

// refreshContent re-reads a tracked room's lightbulb records and feeds and
// merges them into what is kept. Runs on the worker, like everything that
// changes what is kept.
func (s *Redis) refreshContent(room string) {
	regions := s.knownRegions(room, "")
	if !s.tracked(room) {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, 2*time.Second)
	defer cancel()
	c, err := s.readContent(ctx, room, regions)
	if err != nil {
		s.log.Warn("re-reading a room", "room", room, "err", err)
		s.noteError(err)
		return // the next resync tries again
	}
	s.learn(room, c, PartLight|PartMessages)
}

// applyDelta applies a join or leave in sequence; anything out of sequence
// is settled by re-reading that instance's tabs.
func (s *Redis) applyDelta(w wire) {
	s.mu.Lock()
	r := s.rooms[w.Room]
	if r == nil {
		s.mu.Unlock()
		return
	}
	it := r.insts[w.Inst]
	switch {
	case it != nil && w.Seq <= it.seq:
		s.mu.Unlock()
		return // already applied, or older than a re-read
	case (it == nil && w.Seq != 1) || (it != nil && w.Seq != it.seq+1):
		s.mu.Unlock()
		s.reread(w.Room, w.Inst)
		return
	case it == nil:
		it = &instTabs{tabs: make(map[string]Tab)}
		r.insts[w.Inst] = it
	}
	it.seq, it.lastSeen = w.Seq, time.Now()
	if w.Type == "join" && w.Tab != nil {
		it.tabs[w.Tab.ID] = *w.Tab
	} else {
		delete(it.tabs, w.TabID)
	}
	s.mu.Unlock()
	s.notify(Change{Room: w.Room, Parts: PartPresence | PartLatency})
}

// beatSeen keeps an instance alive and re-reads it if it is ahead of us.
func (s *Redis) beatSeen(w wire) {
	s.mu.Lock()
	r := s.rooms[w.Room]
	if r == nil {
		s.mu.Unlock()
		return
	}
	it := r.insts[w.Inst]
	behind := it == nil || w.Seq > it.seq
	if it != nil {
		it.lastSeen = time.Now()
	}
	s.mu.Unlock()
	if behind {
		s.reread(w.Room, w.Inst)
		return
	}
	s.notify(Change{Room: w.Room, Parts: PartLatency})
}

func (s *Redis) dropInstance(room, inst string) {
	s.mu.Lock()
	r := s.rooms[room]
	var had bool
	if r != nil {
		_, had = r.insts[inst]
		delete(r.insts, inst)
	}
	s.mu.Unlock()
	if had {
		s.notify(Change{Room: room, Parts: PartPresence})
	}
}

// reread replaces what is known of one instance's tabs in a room by what the
// store holds.
func (s *Redis) reread(room, inst string) {
	ctx, cancel := context.WithTimeout(s.ctx, 2*time.Second)
	defer cancel()
	h, err := s.read.Do(ctx, s.read.B().Hgetall().Key(tabsKey(room, inst)).Build()).AsStrMap()
	if err != nil {
		s.log.Warn("re-reading an instance's tabs", "room", room, "instance", inst, "err", err)
		return // the next beat or resync tries again
	}
	s.mu.Lock()
	r := s.rooms[room]
	if r == nil {
		s.mu.Unlock()
		return
	}
	switch it := decodeTabs(h); {
	case it != nil:
		r.insts[inst] = it
	case s.trustAbsenceLocked(time.Now()):
		delete(r.insts, inst)
	}
	s.mu.Unlock()
	s.notify(Change{Room: room, Parts: PartPresence})
}

// decodeTabs reads an instance's tabs hash; nil when it is gone.
func decodeTabs(h map[string]string) *instTabs {
	if len(h) == 0 {
		return nil
	}
	it := &instTabs{tabs: make(map[string]Tab), lastSeen: time.Now()}
	for k, v := range h {
		if k == "_seq" {
			it.seq, _ = strconv.ParseUint(v, 10, 64)
			continue
		}
		var t Tab
		if json.Unmarshal([]byte(v), &t) == nil {
			it.tabs[k] = t
		}
	}
	return it
}

// track makes sure a room is kept here, reading it from the store the first
// time it is asked for. The read runs on the worker: announcements handled
// before it are in what it reads, and those after it are applied to it.
func (s *Redis) track(ctx context.Context, room string) error {
	if s.tracked(room) {
		return nil
	}
	done := make(chan error, 1)
	read := func() {
		if s.tracked(room) {
			done <- nil
			return
		}
		ctx, cancel := context.WithTimeout(s.ctx, writeTimeout)
		defer cancel()
		r, err := s.discover(ctx, room)
		if err == nil {
			s.mu.Lock()
			s.rooms[room] = r
			s.mu.Unlock()
		}
		done <- err
	}
	select {
	case s.work <- read:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.ctx.Done():
		return ErrUnavailable
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-s.ctx.Done():
		return ErrUnavailable
	}
}

// discover reads everything a room holds in the store: which regions wrote
// to it, their lightbulb records and feeds, and every instance's tabs.
func (s *Redis) discover(ctx context.Context, room string) (*redisRoom, error) {
	r := newRedisRoom()
	var insts []string
	for cursor := uint64(0); ; {
		entry, err := s.read.Do(ctx, s.read.B().Scan().Cursor(cursor).Match(keyPrefix+room+":*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			return nil, err
		}
		for _, key := range entry.Elements {
			switch _, kind, owner, ok := parseKey(key); {
			case !ok:
			case kind == "tabs":
				insts = append(insts, owner)
			case kind == "light" || kind == "feed":
				r.regions[owner] = true
			}
		}
		if cursor = entry.Cursor; cursor == 0 {
			break
		}
	}
	cmds := make(rueidis.Commands, len(insts))
	for i, inst := range insts {
		cmds[i] = s.read.B().Hgetall().Key(tabsKey(room, inst)).Build()
	}
	for i, res := range s.read.DoMulti(ctx, cmds...) {
		h, err := res.AsStrMap()
		if err != nil {
			return nil, err
		}
		if it := decodeTabs(h); it != nil {
			r.insts[insts[i]] = it
		}
	}
	var err error
	if r.content, err = s.readContent(ctx, room, slices.Collect(maps.Keys(r.regions))); err != nil {
		return nil, err
	}
	r.content.clocks(s.observe)
	return r, nil
}

// resyncAll re-reads every tracked room: presence replaces what deltas
// built, content is merged (it only grows). Then it tells watchers
// everything may have changed. Runs on the worker.
func (s *Redis) resyncAll() error {
	s.mu.Lock()
	rooms := slices.Collect(maps.Keys(s.rooms))
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	var failed error
	for _, room := range rooms {
		r, err := s.discover(ctx, room)
		if err != nil {
			failed = fmt.Errorf("room %s: %w", room, err)
			s.noteError(err)
			continue
		}
		s.mu.Lock()
		if old := s.rooms[room]; old != nil {
			for g := range old.regions {
				r.regions[g] = true
			}
			r.merge(old.content, feedKeep)
			keepMissing(r, old, s.trustAbsenceLocked(time.Now()))
		}
		s.rooms[room] = r
		s.mu.Unlock()
		s.resyncs.Add(1)
	}
	s.notify(Change{Parts: AllParts})
	return failed
}

// keepMissing carries over into a fresh reading the instances it lacks but
// old had, when their absence cannot be trusted: they get a TTL to show up
// (checkSilent re-reads them then), so a room never empties because this
// instance, not theirs, was cut off.
func keepMissing(r, old *redisRoom, trusted bool) {
	if trusted {
		return
	}
	for inst, it := range old.insts {
		if r.insts[inst] == nil {
			it.lastSeen = time.Now()
			r.insts[inst] = it
		}
	}
}

// restoreAll writes back everything this instance holds that the store may
// have lost: every tracked room's lightbulb records and feeds (merged, so
// any number of instances may do it at once), and its own tabs.
func (s *Redis) restoreAll() error {
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	s.mu.Lock()
	rooms := slices.Collect(maps.Keys(s.rooms))
	var mine []string
	for room, tabs := range s.mine {
		if len(tabs) > 0 {
			mine = append(mine, room)
		}
	}
	s.mu.Unlock()
	for _, room := range rooms {
		if err := s.restoreContent(ctx, room); err != nil {
			return fmt.Errorf("room %s: %w", room, err)
		}
	}
	for _, room := range mine {
		if err := s.rewriteTabs(ctx, room); err != nil {
			return fmt.Errorf("room %s: %w", room, err)
		}
	}
	return nil
}

// restoreContent merges a room's lightbulb records and feeds as this
// instance holds them into the store.
func (s *Redis) restoreContent(ctx context.Context, room string) error {
	if _, _, err := s.runSwitch(ctx, room, "merge", "", 0, "", ""); err != nil {
		return err
	}
	s.mu.Lock()
	feeds := make(map[string][]Message)
	if r := s.rooms[room]; r != nil {
		for g, f := range r.feeds {
			feeds[g] = slices.Clone(f)
		}
	}
	s.mu.Unlock()
	for g, feed := range feeds {
		if len(feed) == 0 {
			continue
		}
		args := []string{g, strconv.Itoa(feedKeep), eventsChannel}
		for _, m := range feed {
			b, _ := json.Marshal(m)
			hint := wire{Type: "say", Room: room, Region: g, Msg: &m}.encode()
			args = append(args, m.ID, string(b), hint)
		}
		if err := s.exec(ctx, mergeFeedScript, []string{feedKey(room, g), regionsKey(room)}, args).Error(); err != nil {
			return err
		}
	}
	return nil
}

// heartbeat renews this instance's presence (one call per room with tabs
// here, never per connection), rewrites it if the store lost it, and checks
// that every other instance still beats.
func (s *Redis) heartbeat() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.beat()
		s.enqueue(s.checkSilent)
	}
}

func (s *Redis) beat() {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Heartbeat)
	defer cancel()
	s.mu.Lock()
	rooms := make([]string, 0, len(s.mine))
	stale := make(map[string]bool, len(s.stale))
	for room, tabs := range s.mine {
		if len(tabs) == 0 && !s.stale[room] {
			delete(s.mine, room)
			continue
		}
		rooms = append(rooms, room)
	}
	for room := range s.stale {
		stale[room] = true
	}
	s.mu.Unlock()
	ttl := strconv.FormatInt(s.cfg.TTL.Milliseconds(), 10)
	for _, room := range rooms {
		w := wire{Type: "beat", Room: room, Region: s.cfg.Region, Inst: s.inst, Wall: time.Now().UnixNano()}
		key := []string{tabsKey(room, s.inst)}
		if !stale[room] {
			seq, err := s.exec(ctx, beatScript, key, []string{ttl, eventsChannel, w.seqTemplate(), "}"}).AsInt64()
			if err != nil {
				s.noteError(err)
				continue
			}
			if seq >= 0 {
				s.noteSeq(room, uint64(seq))
				continue
			}
		}
		// The store lost our tabs (restarted empty, or we were cut off for
		// longer than the TTL), or missed a change of ours.
		if err := s.rewriteTabs(ctx, room); err != nil {
			s.noteError(err)
		}
	}
}

// rewriteTabs writes this instance's whole presence in a room again, in a
// new sequence, which makes every receiver re-read it.
func (s *Redis) rewriteTabs(ctx context.Context, room string) error {
	mu := s.roomLock(room)
	mu.Lock()
	defer mu.Unlock()
	return s.rewriteTabsLocked(ctx, room)
}

// rewriteTabsLocked is rewriteTabs with the room's tab lock held, so that no
// join or leave runs between reading our tabs and writing them.
func (s *Redis) rewriteTabsLocked(ctx context.Context, room string) error {
	s.mu.Lock()
	tabs := slices.Collect(maps.Values(s.mine[room]))
	s.mySeq[room]++
	next := s.mySeq[room]
	s.mu.Unlock()
	w := wire{Type: "beat", Room: room, Region: s.cfg.Region, Inst: s.inst, Wall: s.now().UnixNano()}
	args := []string{strconv.FormatInt(s.cfg.TTL.Milliseconds(), 10), eventsChannel, w.seqTemplate(), "}", strconv.FormatUint(next, 10)}
	for _, t := range tabs {
		b, _ := json.Marshal(t)
		args = append(args, t.ID, string(b))
	}
	if err := s.exec(ctx, restoreScript, []string{tabsKey(room, s.inst)}, args).Error(); err != nil {
		s.mu.Lock()
		s.stale[room] = true
		s.mu.Unlock()
		return err
	}
	s.mu.Lock()
	delete(s.stale, room)
	s.mu.Unlock()
	s.log.Info("rewrote this instance's presence in the store", "room", room, "tabs", len(tabs))
	return nil
}

// checkSilent re-reads instances not heard from for longer than the TTL: the
// store's expiry event may have been missed, and the store has the truth.
func (s *Redis) checkSilent() {
	limit := time.Now().Add(-s.cfg.TTL - s.cfg.Heartbeat)
	type ri struct{ room, inst string }
	var silent []ri
	s.mu.Lock()
	for room, r := range s.rooms {
		for inst, it := range r.insts {
			if it.lastSeen.Before(limit) {
				silent = append(silent, ri{room, inst})
			}
		}
	}
	s.mu.Unlock()
	for _, x := range silent {
		s.reread(x.room, x.inst)
	}
}
