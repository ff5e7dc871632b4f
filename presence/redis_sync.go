package presence

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/redis/rueidis"
)

// This file is how an instance keeps the rooms it serves: read once from
// the store (found from the room's indexes, never by SCAN), then kept up to
// date by announcements, re-read on any doubt, and written back when the
// store turns out to hold less than the instance.

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
	if w.Inst == s.inst {
		// Ours are known here first hand, and their watchers told when
		// made: kept again from the echo, they were a second copy of
		// every tab here, and a second render of every join and leave.
		return
	}
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
	it.seq = w.Seq
	if w.Type == "join" && w.Tab != nil {
		it.tabs[w.Tab.ID] = *w.Tab
	} else {
		delete(it.tabs, w.TabID)
	}
	s.mu.Unlock()
	s.notify(Change{Room: w.Room, Parts: PartPresence | PartLatency})
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
	case inst == s.inst: // ours are known here first hand
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
	it := &instTabs{tabs: make(map[string]Tab)}
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

// track makes sure a room is kept here, subscribing to it and reading it
// from the store the first time it is asked for. Both run on the worker,
// after the subscription: announcements handled before the read are in
// what it reads, and those after it are applied to it. Rooms asked for
// while the worker is busy are read together, in a few round trips for all
// of them: a reconnect storm asks for thousands of rooms a second, and read
// one by one they queued every opening stream for seconds.
func (s *Redis) track(ctx context.Context, room string) error {
	if s.tracked(room) {
		return nil
	}
	done := make(chan error, 1)
	s.mu.Lock()
	first := len(s.toTrack) == 0
	s.toTrack[room] = append(s.toTrack[room], done)
	s.mu.Unlock()
	if first {
		// Not dropped like a hint, nor given up with ctx: the rooms
		// added after this one wait for it.
		select {
		case s.work <- s.trackPending:
		case <-s.ctx.Done():
			return ErrUnavailable
		}
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

// trackPending subscribes to and reads every room asked for since it was
// queued, and tells who waits. Runs on the worker.
func (s *Redis) trackPending() {
	s.mu.Lock()
	pending := s.toTrack
	s.toTrack = make(map[string][]chan error)
	s.mu.Unlock()
	rooms := make([]string, 0, len(pending))
	for room := range pending {
		if !s.tracked(room) {
			rooms = append(rooms, room)
		}
	}
	err := s.trackRooms(rooms)
	for _, waiting := range pending {
		for _, done := range waiting {
			done <- err
		}
	}
}

func (s *Redis) trackRooms(rooms []string) error {
	if len(rooms) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(s.ctx, writeTimeout)
	defer cancel()
	if err := s.roomSubscriptions(ctx, rooms, true); err != nil {
		return err
	}
	found, err := s.discover(ctx, rooms)
	if err != nil {
		_ = s.roomSubscriptions(ctx, rooms, false)
		return err
	}
	s.mu.Lock()
	maps.Copy(s.rooms, found)
	s.mu.Unlock()
	return nil
}

// discover reads everything rooms hold in the store, from their indexes:
// the regions that wrote to each, their lightbulb records and feeds, and
// the tabs of every live instance in it (this instance's own are known
// here). Two round trips, however many rooms.
func (s *Redis) discover(ctx context.Context, rooms []string) (map[string]*redisRoom, error) {
	c := s.read
	idx := make(rueidis.Commands, 0, 2*len(rooms))
	for _, room := range rooms {
		idx = append(idx, c.B().Smembers().Key(regionsKey(room)).Build(), c.B().Smembers().Key(instsKey(room)).Build())
	}
	res := c.DoMulti(ctx, idx...)
	regions, insts := make([][]string, len(rooms)), make([][]string, len(rooms))
	for i := range rooms {
		var err error
		if regions[i], err = res[2*i].AsStrSlice(); err != nil {
			return nil, err
		}
		all, err := res[2*i+1].AsStrSlice()
		if err != nil {
			return nil, err
		}
		insts[i] = slices.DeleteFunc(all, func(inst string) bool { return inst == s.inst })
	}

	// Per room: each other instance's tabs and whether it lives, then the
	// content of each region.
	var cmds rueidis.Commands
	for i, room := range rooms {
		if len(insts[i]) > 0 {
			keys := make([]string, len(insts[i]))
			for j, inst := range insts[i] {
				keys[j] = instKey(inst)
				cmds = append(cmds, c.B().Hgetall().Key(tabsKey(room, inst)).Build())
			}
			cmds = append(cmds, c.B().Mget().Key(keys...).Build())
		}
		cmds = append(cmds, s.contentReads(room, regions[i])...)
	}
	res = c.DoMulti(ctx, cmds...)
	found := make(map[string]*redisRoom, len(rooms))
	for i, room := range rooms {
		r := newRedisRoom()
		if n := len(insts[i]); n > 0 {
			alive, err := res[n].ToArray()
			if err != nil {
				return nil, err
			}
			for j, inst := range insts[i] {
				h, err := res[j].AsStrMap()
				if err != nil {
					return nil, err
				}
				if alive[j].IsNil() {
					// Dead, and its expiry went unheard here: reap it.
					if s.trustAbsence() {
						s.enqueue(func() { s.reap(inst, false) })
					}
					continue
				}
				if it := decodeTabs(h); it != nil {
					r.insts[inst] = it
				}
			}
			res = res[n+1:]
		}
		for _, g := range regions[i] {
			r.regions[g] = true
		}
		var err error
		if r.content, err = decodeContent(res, regions[i]); err != nil {
			return nil, err
		}
		res = res[2*len(regions[i]):]
		r.content.clocks(s.observe)
		r.lastUsed = time.Now()
		found[room] = r
	}
	return found, nil
}

// resyncAll re-reads every tracked room: presence replaces what deltas
// built, content is merged (it only grows), and whatever the store lacks of
// what this instance holds is written back. Then it tells watchers
// everything may have changed. Runs on the worker.
func (s *Redis) resyncAll() error {
	s.mu.Lock()
	rooms := slices.Collect(maps.Keys(s.rooms))
	s.mu.Unlock()
	err := s.rereadRooms(rooms)
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	if merr := s.loadMembers(ctx); merr != nil {
		if err == nil {
			err = fmt.Errorf("memberships: %w", merr)
		}
		s.noteError(merr)
	} else {
		s.prime()
	}
	cancel()
	s.notify(Change{Parts: AllParts})
	return err
}

// resync re-reads some tracked rooms, as resyncAll does, and tells their
// watchers.
func (s *Redis) resync(rooms []string) error {
	err := s.rereadRooms(rooms)
	for _, room := range rooms {
		s.notify(Change{Room: room, Parts: AllParts})
	}
	return err
}

// rereadRooms re-reads rooms that are still tracked (see resyncAll).
func (s *Redis) rereadRooms(rooms []string) error {
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	found, err := s.discover(ctx, rooms)
	if err != nil {
		s.noteError(err)
		return fmt.Errorf("re-reading %d rooms: %w", len(rooms), err)
	}
	var failed error
	for room, r := range found {
		behind := false
		s.mu.Lock()
		if old := s.rooms[room]; old != nil {
			for g := range old.regions {
				r.regions[g] = true
			}
			behind = r.lacks(old.content, feedKeep)
			r.merge(old.content, feedKeep)
			r.lastUsed = old.lastUsed
			keepMissing(r, old, s.trustAbsenceLocked(time.Now()))
			s.rooms[room] = r
		}
		s.mu.Unlock()
		if behind {
			s.log.Warn("the store lost part of a room; writing back what this instance holds", "room", room)
			s.faults.add("restore")
			if err := s.restoreContent(ctx, room); err != nil {
				failed = fmt.Errorf("room %s: %w", room, err)
			}
		}
		s.resyncs.Add(1)
	}
	return failed
}

// keepMissing carries over into a fresh reading the instances it lacks but
// old had, when their absence cannot be trusted (see trustAbsence): the
// re-read after the grace settles them, so a room never empties because
// this instance, not theirs, was cut off or the store lost them.
func keepMissing(r, old *redisRoom, trusted bool) {
	if trusted {
		return
	}
	for inst, it := range old.insts {
		if r.insts[inst] == nil {
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
	if err := s.rewriteMembers(ctx); err != nil {
		return fmt.Errorf("memberships: %w", err)
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
		args := []string{g, strconv.Itoa(feedKeep), roomChannel(room)}
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
