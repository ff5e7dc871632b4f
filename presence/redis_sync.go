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
// what it reads, and those after it are applied to it.
func (s *Redis) track(ctx context.Context, room string) error {
	if s.tracked(room) {
		return nil
	}
	return s.onWorker(ctx, func() error {
		if s.tracked(room) {
			return nil
		}
		ctx, cancel := context.WithTimeout(s.ctx, writeTimeout)
		defer cancel()
		if err := s.roomSubscription(ctx, room, true); err != nil {
			return err
		}
		r, err := s.discover(ctx, room)
		if err != nil {
			_ = s.roomSubscription(ctx, room, false)
			return err
		}
		s.mu.Lock()
		s.rooms[room] = r
		s.mu.Unlock()
		return nil
	})
}

// discover reads everything a room holds in the store, from its indexes:
// the regions that wrote to it, their lightbulb records and feeds, and the
// tabs of every live instance in it (this instance's own are known here).
func (s *Redis) discover(ctx context.Context, room string) (*redisRoom, error) {
	c := s.read
	idx := c.DoMulti(ctx, c.B().Smembers().Key(regionsKey(room)).Build(), c.B().Smembers().Key(instsKey(room)).Build())
	regions, err := idx[0].AsStrSlice()
	if err != nil {
		return nil, err
	}
	all, err := idx[1].AsStrSlice()
	if err != nil {
		return nil, err
	}
	insts := slices.DeleteFunc(all, func(i string) bool { return i == s.inst })
	r := newRedisRoom()
	if len(insts) > 0 {
		cmds := make(rueidis.Commands, 0, len(insts)+1)
		keys := make([]string, len(insts))
		for i, inst := range insts {
			keys[i] = instKey(inst)
			cmds = append(cmds, c.B().Hgetall().Key(tabsKey(room, inst)).Build())
		}
		cmds = append(cmds, c.B().Mget().Key(keys...).Build())
		res := c.DoMulti(ctx, cmds...)
		alive, err := res[len(insts)].ToArray()
		if err != nil {
			return nil, err
		}
		for i, inst := range insts {
			h, err := res[i].AsStrMap()
			if err != nil {
				return nil, err
			}
			if alive[i].IsNil() {
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
	}
	for _, g := range regions {
		r.regions[g] = true
	}
	if r.content, err = s.readContent(ctx, room, regions); err != nil {
		return nil, err
	}
	r.content.clocks(s.observe)
	r.lastUsed = time.Now()
	return r, nil
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
	var failed error
	for _, room := range rooms {
		r, err := s.discover(ctx, room)
		if err != nil {
			failed = fmt.Errorf("room %s: %w", room, err)
			s.noteError(err)
			continue
		}
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
