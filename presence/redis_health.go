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
)

// This file is how an instance knows whether what it serves is live. It
// polls its regional node (and the primary, when writes go there), echoes a
// ping through its own subscription, and is ready only when all of them
// agree and the re-read that every doubt calls for has completed. A node
// that restarted or full-synced may have lost data: the instance writes back
// what it holds before re-reading.

const (
	pollEvery   = 500 * time.Millisecond
	pollTimeout = time.Second
	// echoLimit: a ping not back through the subscription within this long
	// means the path from the write node to this subscriber is broken (a
	// black-holed link keeps a replica "up" for a minute).
	echoLimit = 2500 * time.Millisecond
	// peerSilence is how many seconds a KeyDB peer link may carry nothing
	// before it is taken as cut: its node pings every second.
	peerSilence = 2
	// sweepEvery is how often idle rooms are forgotten and unused ones
	// retired: a constant cost, whatever the number of rooms.
	sweepEvery = 10 * time.Second
	// rereadBatch is the most rooms the periodic safety net re-reads a
	// poll (4 a second): every kept room within the period (30 s) up to
	// 120 rooms, longer beyond, at the same idle cost.
	rereadBatch = 2
)

// trustAbsence tells whether an instance missing from the store (expired,
// deleted, not found) has really gone: only while this instance is live and
// past the grace after its own outage.
func (s *Redis) trustAbsence() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.trustAbsenceLocked(time.Now())
}

func (s *Redis) trustAbsenceLocked(now time.Time) bool {
	return s.health.verdict(now) == nil && now.After(s.health.graceUntil)
}

// nodeState is what the last poll of one node said.
type nodeState struct {
	ok     bool   // reachable and in sync: what it serves is complete
	why    string // why not
	runID  string // a new one means the node restarted
	replID string // a new one means the node loaded a full sync
	// active: seen as a KeyDB active replica, so it must be one again,
	// with every peer link up, to be in sync.
	active bool
}

type health struct {
	subscribed bool
	read       nodeState
	write      nodeState // the primary, when writes go elsewhere; else read
	echoAt     time.Time // our last ping seen back through the subscription
	// resyncDue: a full re-read must complete before serving as live;
	// restoreDue: before it, write back what this instance holds.
	resyncDue, restoreDue bool
	cause                 string // of the pending resync, for the log
	gen                   uint64 // bumped by every new cause
	recovering            bool
	// graceUntil: right after an outage, instances missing from the store
	// may be missing only because the store lost them (they write
	// themselves back at their next beat); until then their absence is not
	// taken as their end.
	graceUntil time.Time
	live       bool // the last verdict, to log changes once
	liveSince  time.Time
	err        error
}

// doubt records a reason to re-read (and maybe restore) everything.
func (h *health) doubt(cause string, restore bool) {
	h.resyncDue = true
	h.restoreDue = h.restoreDue || restore
	h.cause = cause
	h.gen++
}

// verdict is nil when the instance serves live state, else why not.
func (h *health) verdict(now time.Time) error {
	switch {
	case !h.subscribed:
		return fmt.Errorf("not subscribed to store changes: %v", h.err)
	case !h.read.ok:
		return fmt.Errorf("store node: %s", h.read.why)
	case !h.write.ok:
		return fmt.Errorf("primary: %s", h.write.why)
	case now.Sub(h.echoAt) > echoLimit:
		return fmt.Errorf("subscription silent for %v", now.Sub(h.echoAt).Round(100*time.Millisecond))
	case h.resyncDue:
		return fmt.Errorf("re-reading the store after: %s", h.cause)
	}
	return nil
}

// Ready implements Store: subscribed, the nodes answer and are in sync, the
// subscription carries our own pings, and no re-read is pending.
func (s *Redis) Ready(context.Context) error { return s.judge(time.Now()) }

// writable fails fast while the node writes go to is unreachable or out of
// sync: a write to an empty, unsynced KeyDB node would overwrite its peers'
// history when they sync from it.
func (s *Redis) writable() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.health.write.ok {
		return fmt.Errorf("%w: %s", ErrUnavailable, s.health.write.why)
	}
	return nil
}

// lost marks the write node down at once when a call to it broke, rather
// than at the next poll: writes then fail fast and Ready says why.
func (s *Redis) lost(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	down := nodeState{why: "unreachable: " + err.Error(), runID: s.health.write.runID, replID: s.health.write.replID, active: s.health.write.active}
	s.health.write = down
	if s.write == s.read {
		s.health.read = down
	}
}

// watchHealth polls the nodes and pings, logs every change of verdict once,
// and starts the recovery a doubt calls for.
func (s *Redis) watchHealth() {
	defer s.wg.Done()
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	lastResync, lastSweep := time.Now(), time.Now()
	var round []string // rooms the safety net has yet to re-read this round
	batch := 1
	for {
		s.pollHealth()
		s.mu.Lock()
		h := &s.health
		start := h.resyncDue && !h.recovering && h.subscribed && h.read.ok && h.write.ok
		periodic := !h.resyncDue && !start
		if periodic && len(round) == 0 && time.Since(lastResync) > s.cfg.Resync {
			round = slices.Collect(maps.Keys(s.rooms))
			// Spread over the period, but never more than rereadBatch
			// rooms a poll: idle store traffic must not grow with rooms.
			batch = min(max((len(round)*int(pollEvery)+int(s.cfg.Resync)-1)/int(s.cfg.Resync), 1), rereadBatch)
			lastResync = time.Now()
			s.enqueue(s.refreshMembers) // one round trip, whatever the rooms
		}
		if start {
			h.recovering, round = true, nil // a full re-read
			lastResync = time.Now()
		}
		s.mu.Unlock()
		switch {
		case start:
			s.enqueue(s.recover)
		case periodic && len(round) > 0: // a safety net for hints lost unnoticed; stays ready
			next := round[:min(batch, len(round))]
			round = round[len(next):]
			s.enqueue(func() { _ = s.resync(next) })
		}
		if time.Since(lastSweep) > min(sweepEvery, s.cfg.RoomIdle/2, s.cfg.Retention/2) {
			lastSweep = time.Now()
			s.enqueue(s.forgetIdle)
			s.retire()
		}
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Redis) pollHealth() {
	s.mu.Lock()
	prevRead, prevWrite := s.health.read, s.health.write
	s.mu.Unlock()
	read := s.pollNode(s.read, prevRead)
	write := read
	if s.write != s.read {
		write = s.pollNode(s.write, prevWrite)
	}
	s.beat()
	s.checkLiveness()

	now := time.Now()
	s.mu.Lock()
	h := &s.health
	h.read, h.write = read, write
	switch {
	case prevRead.runID != "" && read.runID != "" && read.runID != prevRead.runID:
		h.doubt("the store node restarted", true)
	case prevWrite.runID != "" && write.runID != "" && write.runID != prevWrite.runID:
		h.doubt("the primary restarted", true)
	case prevRead.replID != "" && read.replID != "" && read.replID != prevRead.replID:
		h.doubt("the store node loaded a full sync", true)
	// Back without a restart or a full sync: it lost nothing, and the
	// re-read writes back whatever it turns out to lack anyway.
	case read.ok && !prevRead.ok && prevRead.runID != "":
		h.doubt("the store node is back in sync", false)
	case write.ok && !prevWrite.ok && prevWrite.runID != "":
		h.doubt("the primary is back", false)
	}
	s.mu.Unlock()
	_ = s.judge(now)
}

// judge returns the verdict and, when it changed, logs and counts that
// once. Every place that may see the change calls it: the poller, the end
// of a recovery, and Ready itself.
func (s *Redis) judge(now time.Time) error {
	s.mu.Lock()
	h := &s.health
	verdict := h.verdict(now)
	changed := (verdict == nil) != h.live
	since, first := now.Sub(h.liveSince), h.liveSince.IsZero()
	if changed {
		h.live, h.liveSince = verdict == nil, now
		switch {
		case first:
			s.faults.add("store_connected")
		case h.live:
			s.faults.add("store_regained")
		default:
			s.faults.add("store_lost")
		}
	}
	s.mu.Unlock()
	if changed {
		s.notify(Change{Parts: PartStatus}) // every room's streams are told
	}
	switch {
	case changed && first:
		s.log.Info("store connected: serving live state")
	case changed && verdict == nil:
		s.log.Info("store regained: serving live state", "after", since.Round(time.Millisecond))
	case changed:
		s.log.Warn("store lost: not ready; serving the last state read", "reason", verdict.Error())
	}
	return verdict
}

// pollNode reads a node's identity and replication state.
func (s *Redis) pollNode(c rueidis.Client, prev nodeState) nodeState {
	ctx, cancel := context.WithTimeout(s.ctx, pollTimeout)
	defer cancel()
	res := c.DoMulti(ctx, c.B().Info().Section("server").Build(), c.B().Info().Section("replication").Build())
	srv, err1 := res[0].ToString()
	repl, err2 := res[1].ToString()
	if err := errors.Join(err1, err2); err != nil {
		prev.ok, prev.why = false, "unreachable: "+err.Error()
		return prev
	}
	return judgeNode(infoFields(srv+"\n"+repl), prev)
}

// judgeNode decides from INFO fields whether a node serves complete data.
func judgeNode(f map[string]string, prev nodeState) nodeState {
	st := nodeState{ok: true, runID: f["run_id"], replID: f["master_replid"], active: prev.active}
	for k, v := range f {
		if strings.Contains(k, "sync_in_progress") && v != "0" {
			st.ok, st.why = false, "syncing from its primary or peers"
		}
	}
	switch role := f["role"]; role {
	case "master":
		if st.active {
			st.ok, st.why = false, "a KeyDB node out of its mesh (restarted, not yet re-meshed)"
		}
	case "slave", "active-replica":
		st.active = st.active || role == "active-replica"
		for k, v := range f {
			if strings.HasSuffix(k, "link_status") && v != "up" {
				st.ok, st.why = false, "link to "+strings.TrimSuffix(k, "_link_status")+" is "+v
			}
			// A black-holed peer link stays "up" for repl-timeout (60 s),
			// but nothing comes through it, not even the peer's pings
			// (every second: see enableNotifications).
			if n, err := strconv.Atoi(v); role == "active-replica" && strings.HasSuffix(k, "last_io_seconds_ago") && err == nil && n > peerSilence {
				st.ok, st.why = false, fmt.Sprintf("nothing from %s for %d s", strings.TrimSuffix(k, "_last_io_seconds_ago"), n)
			}
		}
	default:
		st.ok, st.why = false, "unknown role "+role
	}
	return st
}

// infoFields parses INFO output into its key:value fields.
func infoFields(info string) map[string]string {
	f := make(map[string]string)
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && !strings.HasPrefix(k, "#") {
			f[k] = v
		}
	}
	return f
}

// recover writes back what this instance holds if the store may have lost
// it, then re-reads every tracked room; the instance is ready again only if
// no new doubt arose meanwhile. Runs on the worker.
func (s *Redis) recover() {
	s.mu.Lock()
	gen, restore, cause := s.health.gen, s.health.restoreDue, s.health.cause
	s.mu.Unlock()
	start := time.Now()
	var err error
	if restore {
		err = s.restoreAll()
	}
	if err == nil {
		err = s.resyncAll()
	}
	if err == nil {
		// The store now holds what this instance does: writes may go there.
		ctx, cancel := context.WithTimeout(s.ctx, writeTimeout)
		err = s.write.Do(ctx, s.write.B().Set().Key(epochKey).Value("1").Build()).Error()
		cancel()
	}
	s.mu.Lock()
	s.health.recovering = false
	if err == nil && s.health.gen == gen {
		s.health.resyncDue, s.health.restoreDue = false, false
		if !s.health.liveSince.IsZero() { // an outage, not the first connection
			// Others re-announce within a beat of the store's return.
			grace := 4 * pollEvery
			s.health.graceUntil = time.Now().Add(grace)
			// Then whoever is still missing has really gone.
			time.AfterFunc(grace+pollEvery, func() { s.enqueue(func() { _ = s.resyncAll() }) })
		}
	}
	s.mu.Unlock()
	if err != nil {
		s.log.Warn("re-reading the store failed; retrying", "cause", cause, "err", err)
		return
	}
	_ = s.judge(time.Now())
	s.faults.add("resync")
	if restore {
		s.faults.add("restore")
	}
	s.log.Info("re-read the store", "cause", cause, "restored", restore, "ms", time.Since(start).Milliseconds())
}

func (s *Redis) pingChannel() string { return pingPrefix + s.inst }

// faultCounts counts store faults and recoveries by kind, for metrics.
type faultCounts struct {
	mu sync.Mutex
	n  map[string]uint64
}

// faultKinds are counted from zero, so that a dashboard sees them before
// they first happen.
var faultKinds = []string{"store_connected", "store_lost", "store_regained", "resync", "restore",
	"instance_revived", "foreign_announcement"}

func (f *faultCounts) add(kind string) {
	f.mu.Lock()
	if f.n == nil {
		f.n = make(map[string]uint64)
	}
	f.n[kind]++
	f.mu.Unlock()
}

// StoreEvents counts, by kind, the times the store was lost and regained,
// re-read and restored.
func (s *Redis) StoreEvents() map[string]uint64 {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	out := maps.Clone(s.faults.n)
	if out == nil {
		out = make(map[string]uint64)
	}
	for _, k := range faultKinds {
		out[k] += 0
	}
	return out
}
