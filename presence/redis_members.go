package presence

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"globalpresence/internal/shrink"
)

// This file is the global membership index over Redis: each instance owns
// one hash of its memberships (a user with at least one of its tabs in a
// room), changed only on its own first-tab and last-tab transitions and
// announced, numbered, on one global channel. Every instance keeps the
// union in Members, loaded whole at every (re)subscription and re-read,
// then kept by the deltas; an instance whose liveness key goes is dropped.
// So the rooms API reads memory, never the store.

// memberSync is this instance's side of the protocol.
type memberSync struct {
	// rw is held for writing by a rewrite of the whole hash and for
	// reading by one change, so that no change falls between a rewrite's
	// reading of the memberships and its write.
	rw      sync.RWMutex
	mu      sync.Mutex
	written map[member]bool // what the store was last told
	seq     uint64          // the last sequence published
	stale   bool            // the store may lack a change: rewrite it whole
	refs    tabRefs         // this instance's tabs per membership; under Redis.mu
	seqs    map[string]uint64
}

func newMemberSync() memberSync {
	return memberSync{written: make(map[member]bool), refs: make(tabRefs), seqs: make(map[string]uint64)}
}

// memberWire is an announcement on the members channel.
type memberWire struct {
	Type   string `json:"t"` // add, del, all (rewritten whole: re-read it), gone (reaped)
	Inst   string `json:"i"`
	Room   string `json:"r,omitempty"`
	User   UserID `json:"u,omitempty"`
	Region string `json:"g,omitempty"`
	Seq    uint64 `json:"s,omitempty"`
}

func decodeMemberWire(msg string) (memberWire, error) {
	w, err := decodeWhole[memberWire](msg)
	if err != nil {
		return w, err
	}
	var missing bool
	switch w.Type {
	case "add":
		missing = w.Seq == 0 || !ValidRoom(w.Room) || w.User == "" || w.Region == ""
	case "del":
		missing = w.Seq == 0 || !ValidRoom(w.Room) || w.User == ""
	case "all", "gone":
	default:
		return w, fmt.Errorf("unknown membership announcement %q", w.Type)
	}
	if missing || w.Inst == "" {
		return w, fmt.Errorf("a %q membership announcement without what it needs", w.Type)
	}
	return w, nil
}

// memberField is a membership's field in its instance's hash: room names
// never hold ':'.
func memberField(mb member) string { return mb.Room + ":" + string(mb.User) }

// decodeMembers reads an instance's memberships hash; nil when it is gone.
func decodeMembers(h map[string]string) (map[member]string, uint64) {
	if len(h) == 0 {
		return nil, 0
	}
	all := make(map[member]string, len(h))
	var seq uint64
	for k, v := range h {
		if k == "_seq" {
			seq, _ = strconv.ParseUint(v, 10, 64)
			continue
		}
		if room, user, ok := strings.Cut(k, ":"); ok && ValidRoom(room) && user != "" && v != "" {
			all[member{room, UserID(user)}] = v
		}
	}
	return all, seq
}

// countTab adds (or removes) one of this instance's tabs to its
// membership, which is then known here at once. s.mu must be held.
func (s *Redis) countTab(room string, t Tab, add bool) {
	switch {
	case add && s.members.refs.add(room, t):
		s.set(s.inst, member{room, t.User}, s.cfg.Region)
	case !add && s.members.refs.remove(room, t):
		s.set(s.inst, member{room, t.User}, "")
	}
}

// syncMember brings a membership of this instance in the store to what it
// is here, if the store was told otherwise. Any failure leaves the whole
// hash to be rewritten by the next beat.
func (s *Redis) syncMember(ctx context.Context, room string, user UserID) error {
	err := s.writable()
	var seq int64
	if err == nil {
		seq, err = s.writeMember(ctx, member{room, user})
	}
	if err == nil && seq < 0 {
		// Our hash was reaped or lost: this one change would leave the
		// others missing.
		err = s.rewriteMembers(ctx)
	}
	if err != nil {
		s.members.markStale()
		if errors.Is(err, ErrUnavailable) {
			return err // not written at all
		}
		return s.unavailable(err)
	}
	return nil
}

// writeMember runs tab.lua on the memberships hash if the store's view of mb differs from ours.
func (s *Redis) writeMember(ctx context.Context, mb member) (int64, error) {
	ms := &s.members
	ms.rw.RLock()
	defer ms.rw.RUnlock()
	mu := s.roomLock(mb.Room) // one change of a room's memberships at a time
	mu.Lock()
	defer mu.Unlock()
	want := s.has(s.inst, mb)
	ms.mu.Lock()
	same, last := ms.written[mb] == want, ms.seq
	ms.mu.Unlock()
	if same {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	w := memberWire{Type: "del", Inst: s.inst, Room: mb.Room, User: mb.User}
	if want {
		w.Type, w.Region = "add", s.cfg.Region
	}
	seq, err := s.exec(ctx, tabScript, []string{membersKey(s.inst), epochKey}, []string{
		memberField(mb), w.Region, membersChannel, openJSON(w) + `"s":`, "}", strconv.FormatUint(last, 10),
	}).AsInt64()
	if err != nil || seq < 0 {
		return seq, err
	}
	ms.mu.Lock()
	if want {
		ms.written[mb] = true
	} else {
		shrink.Delete(&ms.written, mb) // absent is false: a leave must not cost a key forever
	}
	ms.seq = max(ms.seq, uint64(seq))
	ms.mu.Unlock()
	return seq, nil
}

// rewriteMembers writes this instance's whole memberships hash again, in a
// new sequence, which makes every receiver re-read it.
func (s *Redis) rewriteMembers(ctx context.Context) error {
	ms := &s.members
	ms.rw.Lock()
	defer ms.rw.Unlock()
	all := s.of(s.inst)
	ms.mu.Lock()
	ms.seq++
	next := ms.seq
	ms.mu.Unlock()
	w := memberWire{Type: "all", Inst: s.inst}
	args := []string{membersChannel, openJSON(w) + `"s":`, "}", strconv.FormatUint(next, 10), "", "", ""}
	written := make(map[member]bool, len(all))
	for mb, region := range all {
		args = append(args, memberField(mb), region)
		written[mb] = true
	}
	if err := s.exec(ctx, restoreScript, []string{membersKey(s.inst)}, args).Error(); err != nil {
		ms.markStale()
		return err
	}
	ms.mu.Lock()
	ms.written, ms.stale = written, false
	ms.mu.Unlock()
	s.log.Info("rewrote this instance's memberships in the store", "memberships", len(all))
	return nil
}

// markStale notes that the store may lack a change of ours: the next beat
// rewrites the whole hash.
func (ms *memberSync) markStale() {
	ms.mu.Lock()
	ms.stale = true
	ms.mu.Unlock()
}

// membersStale tells whether the store may lack a change of ours.
func (s *Redis) membersStale() bool {
	s.members.mu.Lock()
	defer s.members.mu.Unlock()
	return s.members.stale
}

// applyMember applies an announcement of another instance's memberships,
// in sequence; a gap is settled by re-reading its hash. Runs on the worker.
func (s *Redis) applyMember(msg string) {
	w, err := decodeMemberWire(msg)
	if err != nil {
		s.log.Warn("ignoring a malformed membership announcement", "message", msg, "err", err)
		return
	}
	if w.Inst == s.inst {
		return // ours are known here first hand
	}
	seqs := s.members.seqs
	switch last := seqs[w.Inst]; {
	case w.Type == "gone":
		s.dropMembers(w.Inst)
	case w.Type == "all" || w.Seq > last+1:
		s.rereadMembers(w.Inst)
	case w.Seq == last+1:
		seqs[w.Inst] = w.Seq
		s.set(w.Inst, member{w.Room, w.User}, w.Region) // "" for del
	}
}

// dropMembers forgets an instance's memberships. Runs on the worker.
func (s *Redis) dropMembers(inst string) {
	delete(s.members.seqs, inst)
	s.replace(inst, nil)
}

// rereadMembers replaces what is known of an instance's memberships by what
// the store holds. Runs on the worker.
func (s *Redis) rereadMembers(inst string) {
	ctx, cancel := context.WithTimeout(s.ctx, 2*time.Second)
	defer cancel()
	h, err := s.read.Do(ctx, s.read.B().Hgetall().Key(membersKey(inst)).Build()).AsStrMap()
	if err != nil {
		s.log.Warn("re-reading an instance's memberships", "instance", inst, "err", err)
		return // the next resync tries again
	}
	s.learnMembers(inst, h)
}

// learnMembers takes an instance's memberships hash as read. A missing hash
// drops the instance only while its absence can be trusted (see
// trustAbsence). Runs on the worker.
func (s *Redis) learnMembers(inst string, h map[string]string) {
	all, seq := decodeMembers(h)
	switch {
	case all != nil:
		s.members.seqs[inst] = seq
		s.replace(inst, all)
	case s.trustAbsence():
		s.dropMembers(inst)
	}
}

// refreshMembers is the periodic safety net for announcements lost
// unnoticed: it reads every instance's sequence only (idle traffic must not
// grow with memberships) and re-reads the memberships of those that moved
// on without us. Dead instances are left to checkLiveness. Runs on the
// worker.
func (s *Redis) refreshMembers() {
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	c := s.read
	insts, err := c.Do(ctx, c.B().Hkeys().Key(instancesKey).Build()).AsStrSlice()
	insts = slices.DeleteFunc(insts, func(i string) bool { return i == s.inst })
	if err != nil || len(insts) == 0 {
		return // the next round tries again
	}
	cmds := make(rueidis.Commands, len(insts))
	for i, inst := range insts {
		cmds[i] = c.B().Hget().Key(membersKey(inst)).Field("_seq").Build()
	}
	for i, res := range c.DoMulti(ctx, cmds...) {
		seq, err := res.AsUint64()
		if err == nil && seq != s.members.seqs[insts[i]] {
			s.rereadMembers(insts[i])
		}
	}
}

// loadMembers reads every live instance's memberships: one round trip,
// whatever the rooms. Those of instances gone from the index, or dead, are
// dropped (if absence can be trusted), and this instance's hash is
// rewritten if the store lost it. Runs on the worker, after every
// (re)subscription and periodically.
func (s *Redis) loadMembers(ctx context.Context) error {
	c := s.read
	insts, err := c.Do(ctx, c.B().Hkeys().Key(instancesKey).Build()).AsStrSlice()
	if err != nil {
		return err
	}
	listed := make(map[string]bool, len(insts))
	for _, inst := range insts {
		listed[inst] = true
	}
	listed[s.inst] = true
	insts = slices.Collect(maps.Keys(listed))
	keys := make([]string, len(insts))
	cmds := make(rueidis.Commands, 0, len(insts)+1)
	for i, inst := range insts {
		keys[i] = instKey(inst)
		cmds = append(cmds, c.B().Hgetall().Key(membersKey(inst)).Build())
	}
	cmds = append(cmds, c.B().Mget().Key(keys...).Build())
	res := c.DoMulti(ctx, cmds...)
	alive, err := res[len(insts)].ToArray()
	if err != nil {
		return err
	}
	trusted := s.trustAbsence()
	for i, inst := range insts {
		h, err := res[i].AsStrMap()
		if err != nil {
			return err
		}
		switch {
		case inst == s.inst:
			if len(h) == 0 && len(s.of(s.inst)) > 0 {
				s.members.markStale() // the next beat writes it
			}
		case alive[i].IsNil():
			if trusted {
				s.dropMembers(inst)
				s.enqueue(func() { s.reap(inst, false) }) // dead, and its expiry went unheard here
			}
		default:
			s.learnMembers(inst, h)
		}
	}
	for _, inst := range s.instances() {
		if !listed[inst] && trusted {
			s.dropMembers(inst)
		}
	}
	return nil
}
