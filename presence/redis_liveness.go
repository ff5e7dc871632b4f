package presence

import (
	"context"
	"encoding/json"
	"maps"
	"runtime/debug"
	"slices"
	"strconv"
	"time"

	"globalpresence/internal/shrink"
)

// This file is how instances know each other alive: one heartbeat per
// instance, whatever its rooms, renews its liveness key; when the key
// expires (kill -9, a stall longer than the TTL) every instance drops its
// tabs from every room at once, and one of them reaps its tabs from the
// store. An instance that finds it was taken for dead writes its tabs again.

// beat renews this instance's liveness and pings its subscription, and
// rewrites its tabs in every room if it was taken for dead or the store
// lost them. Runs on the health loop, every pollEvery.
func (s *Redis) beat() {
	ctx, cancel := context.WithTimeout(s.ctx, pollTimeout)
	defer cancel()
	s.mu.Lock()
	hasTabs := "0"
	for room, tabs := range s.mine {
		// Only rooms the store has acknowledged tabs in (not one whose
		// first join is on its way, nor one marked stale).
		if len(tabs) > 0 && s.mySeq[room] > 0 && !s.stale[room] {
			hasTabs = "1"
			break
		}
	}
	s.mu.Unlock()
	alive, err := s.exec(ctx, beatScript, []string{instKey(s.inst), instRoomsKey(s.inst), instancesKey},
		[]string{s.cfg.Region, strconv.FormatInt(s.cfg.TTL.Milliseconds(), 10), s.pingChannel(), hasTabs, s.inst,
			strconv.FormatInt(s.now().UnixMilli(), 10)}).AsInt64()
	if err != nil {
		return
	}
	s.mu.Lock()
	lost := alive == 0 && s.beaten
	s.beaten = true
	if lost {
		for room, tabs := range s.mine {
			if len(tabs) > 0 {
				s.stale[room] = true
			}
		}
	}
	stale := slices.Collect(maps.Keys(s.stale))
	writable := s.health.write.ok
	if !writable {
		// Not to a node out of sync: its emptier indexes could win over
		// its peers' when they sync.
		stale = nil
	}
	s.mu.Unlock()
	if writable && (lost || s.membersStale()) {
		_ = s.rewriteMembers(ctx) // failed: still stale, the next beat tries again
	}
	if lost {
		s.log.Warn("this instance was taken for dead (stalled longer than the TTL, or the store lost it); writing its tabs again",
			"rooms", len(stale))
		s.faults.add("instance_revived")
	}
	for _, room := range stale {
		if err := s.rewriteTabs(ctx, room); err != nil {
			return // the next beat tries again
		}
	}
}

// checkLiveness reads the liveness keys of every instance known here: an
// expired key reads as nil at once, while its expiry event waits for the
// store's expiry cycle to sample it among every other key with a TTL
// (seconds, with many operation keys). One read per poll, whatever the
// rooms. Runs on the health loop.
func (s *Redis) checkLiveness() {
	known := map[string]bool{}
	s.mu.Lock()
	for _, r := range s.rooms {
		for inst := range r.insts {
			known[inst] = true
		}
	}
	s.mu.Unlock()
	for _, inst := range s.instances() { // with memberships, in no room kept here
		known[inst] = true
	}
	if len(known) == 0 {
		return
	}
	insts := slices.Collect(maps.Keys(known))
	keys := make([]string, len(insts))
	for i, inst := range insts {
		keys[i] = instKey(inst)
	}
	ctx, cancel := context.WithTimeout(s.ctx, pollTimeout)
	defer cancel()
	alive, err := s.read.Do(ctx, s.read.B().Mget().Key(keys...).Build()).ToArray()
	if err != nil {
		return
	}
	for i, v := range alive {
		if v.IsNil() {
			inst := insts[i]
			s.enqueue(func() { s.instanceGone(inst) })
		}
	}
}

// instanceGone drops an instance whose liveness key expired or was deleted
// from every tracked room, and reaps its tabs from the store. Runs on the
// worker.
func (s *Redis) instanceGone(inst string) {
	if inst == s.inst || !s.trustAbsence() {
		return // our own beat notices; or we cannot tell its end from our outage
	}
	s.dropMembers(inst)
	var rooms []string
	s.mu.Lock()
	for room, r := range s.rooms {
		if _, ok := r.insts[inst]; ok {
			delete(r.insts, inst)
			rooms = append(rooms, room)
		}
	}
	s.mu.Unlock()
	for _, room := range rooms {
		s.notify(Change{Room: room, Parts: PartPresence})
	}
	s.reap(inst, false)
}

// reap removes a dead instance's tabs from the store (force: this
// instance's own, on its way out).
func (s *Redis) reap(inst string, force bool) {
	ctx, cancel := context.WithTimeout(s.ctx, writeTimeout)
	defer cancel()
	if force {
		ctx, cancel = context.WithTimeout(context.Background(), writeTimeout) // s.ctx is done at Close
		defer cancel()
	}
	flag := "0"
	if force {
		flag = "1"
	}
	gone, _ := json.Marshal(memberWire{Type: "gone", Inst: inst})
	if err := s.exec(ctx, reapScript, []string{instKey(inst), instRoomsKey(inst), membersKey(inst), instancesKey},
		[]string{inst, flag, keyPrefix, membersChannel, string(gone)}).Error(); err != nil {
		s.log.Warn("removing a dead instance's tabs from the store", "instance", inst, "err", err)
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
	w := wire{Type: "tabs", Room: room, Region: s.cfg.Region, Inst: s.inst, Wall: s.now().UnixNano()}
	args := []string{roomChannel(room), w.seqTemplate(), "}", strconv.FormatUint(next, 10), s.inst, room,
		strconv.FormatInt(s.now().UnixMilli(), 10)}
	for _, t := range tabs {
		b, _ := json.Marshal(t)
		args = append(args, t.ID, string(b))
	}
	if err := s.exec(ctx, restoreScript, s.tabKeys(room), args).Error(); err != nil {
		s.mu.Lock()
		s.stale[room] = true
		s.mu.Unlock()
		return err
	}
	s.mu.Lock()
	delete(s.stale, room)
	s.dropMineIfEmptyLocked(room)
	s.mu.Unlock()
	s.log.Info("rewrote this instance's presence in the store", "room", room, "tabs", len(tabs))
	return nil
}

// tabKeys are the keys tab.lua and restore.lua take.
func (s *Redis) tabKeys(room string) []string {
	return []string{tabsKey(room, s.inst), instsKey(room), instRoomsKey(s.inst), roomsKey, epochKey}
}

// forgetIdle drops rooms from memory that no local stream has asked for in
// RoomIdle and that hold none of this instance's tabs, and unsubscribes
// from them. Runs on the worker.
func (s *Redis) forgetIdle() {
	limit := time.Now().Add(-s.cfg.RoomIdle)
	var idle []string
	s.mu.Lock()
	shrink.DeleteFunc(&s.rooms, func(room string, r *redisRoom) bool {
		if r.lastUsed.Before(limit) && len(s.mine[room]) == 0 {
			idle = append(idle, room)
			return true
		}
		return false
	})
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.ctx, writeTimeout)
	defer cancel()
	for _, room := range idle {
		_ = s.roomSubscription(ctx, room, false) // a stray announcement is only counted
	}
	if s.forgotten += len(idle); s.forgotten >= releaseAfter {
		// What they held is garbage that an idle server, allocating
		// nothing, would keep until the runtime's next forced collection.
		s.forgotten = 0
		debug.FreeOSMemory()
	}
}

// releaseAfter is how many rooms forgotten are worth returning their
// memory to the OS.
const releaseAfter = 1000

// retire deletes rooms nobody used for the retention period, a batch at a
// time. Every instance may run it.
func (s *Redis) retire() {
	if s.writable() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, writeTimeout)
	defer cancel()
	now := s.now()
	n, err := s.exec(ctx, retireScript, []string{roomsKey}, []string{
		strconv.FormatInt(now.Add(-s.cfg.Retention).UnixMilli(), 10), "100", keyPrefix, instPrefix,
		strconv.FormatInt(now.UnixMilli(), 10)}).AsInt64()
	if err == nil && n > 0 {
		s.log.Info("deleted rooms unused for the retention period", "rooms", n, "retention", s.cfg.Retention)
	}
}
