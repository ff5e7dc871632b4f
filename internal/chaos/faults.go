package chaos

import (
	"context"
	"fmt"
	"math/rand"
	"syscall"
	"time"

	"globalpresence/internal/cluster"
)

const (
	// maxPause bounds a SIGSTOP.
	maxPause = 15 * time.Second
	// ghostTimeout bounds the wait for a killed instance's tabs to leave.
	ghostTimeout = 30 * time.Second
	// ghostGoal is how soon they should leave (DESIGN §6).
	ghostGoal = 10 * time.Second
	// recoverTimeout bounds the wait for every app's /readyz after a heal.
	recoverTimeout = 30 * time.Second
)

// A fault breaks one thing and returns how to heal it. Only one is active
// at a time; the runner keeps the heal so that the end of the run (or
// Ctrl-C) heals whatever is still broken.
type fault struct {
	name  string
	store bool // a store fault: /readyz is watched while it lasts
	apply func(ctx context.Context, rng *rand.Rand) (what string, heal func() error, err error)
}

func (r *runner) faults() []fault {
	return []fault{
		{"kill-app", false, r.killApp},
		{"pause-app", false, r.pauseApp},
		{"crash-node-keep-data", true, func(ctx context.Context, rng *rand.Rand) (string, func() error, error) {
			return r.crashNode(ctx, rng, true)
		}},
		{"crash-node-lose-data", true, func(ctx context.Context, rng *rand.Rand) (string, func() error, error) {
			return r.crashNode(ctx, rng, false)
		}},
		{"cut-link", true, func(_ context.Context, rng *rand.Rand) (string, func() error, error) {
			l := pick(rng, r.c.Links())
			l.Proxy.Cut()
			return "cut link " + l.Name, func() error { l.Proxy.Restore(); return nil }, nil
		}},
		{"stall-link", true, func(_ context.Context, rng *rand.Rand) (string, func() error, error) {
			l := pick(rng, r.c.Links())
			l.Proxy.Stall()
			return "black-hole link " + l.Name, func() error { l.Proxy.Restore(); return nil }, nil
		}},
	}
}

func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.Intn(len(xs))] }

// killApp kills an instance with SIGKILL, measures how long its tabs take
// to leave every other instance, and restarts it when healed.
func (r *runner) killApp(ctx context.Context, rng *rand.Rand) (string, func() error, error) {
	a := pick(rng, r.c.Apps())
	r.setDown(a, true)
	keys, ids := r.streamsOn(a.Name)
	if err := a.Kill(); err != nil {
		return "", nil, err
	}
	killed := time.Now()
	r.bg.Go(func() { r.measureGhosts(ctx, a, keys, ids, killed) })
	return "kill -9 " + a.Name, func() error {
		if err := a.Start(); err != nil {
			return err
		}
		r.setDown(a, false)
		return nil
	}, nil
}

// pauseApp freezes an instance with SIGSTOP (a long GC pause, a stuck VM):
// its connections stay open but it answers nothing and renews nothing.
func (r *runner) pauseApp(_ context.Context, rng *rand.Rand) (string, func() error, error) {
	a := pick(rng, r.c.Apps())
	pid := a.PID()
	if pid == 0 {
		return "", nil, fmt.Errorf("%s is not running", a.Name)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return "", nil, err
	}
	return fmt.Sprintf("SIGSTOP %s (pid %d)", a.Name, pid), func() error {
		return syscall.Kill(pid, syscall.SIGCONT)
	}, nil
}

// crashNode kills a store node; healing restarts it with or without its
// data (and re-meshes a KeyDB node).
func (r *runner) crashNode(ctx context.Context, rng *rand.Rand, keepData bool) (string, func() error, error) {
	n := pick(rng, r.c.StoreNodes())
	if err := n.Node.Kill(); err != nil {
		return "", nil, err
	}
	what := "kill -9 " + n.Name + ", restart with its data"
	if !keepData {
		what = "kill -9 " + n.Name + ", restart without its data"
	}
	return what, func() error { return r.c.CrashNode(ctx, n, keepData) }, nil
}

// streamKey is a region and user whose tabs a fault may leave behind.
type streamKey = regionUser

// streamsOn is the regions and users of the streams on instance, and the
// streams' ids.
func (r *runner) streamsOn(instance string) (map[streamKey]bool, map[int]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	keys, ids := map[streamKey]bool{}, map[int]bool{}
	for _, s := range r.streams {
		if s.Instance == instance {
			keys[streamKey{s.Region, s.User.ID}] = true
			ids[s.ID] = true
		}
	}
	return keys, ids
}

// measureGhosts polls the other instances until none shows more tabs for
// the killed instance's users than the checker holds open for them, and
// notes how long that took. It is a measurement, not an invariant: the
// final check catches ghosts that never leave.
func (r *runner) measureGhosts(ctx context.Context, killed *cluster.App, keys map[streamKey]bool, dead map[int]bool, at time.Time) {
	if len(keys) == 0 {
		r.note(killed.Name, "killed "+killed.Name+" held no streams: no tabs to watch leave")
		return
	}
	for time.Since(at) < ghostTimeout {
		if ctx.Err() != nil {
			return
		}
		if r.ghostsGone(ctx, killed, keys, dead) {
			d := time.Since(at)
			verdict := "within"
			if d > ghostGoal {
				verdict = "OVER"
			}
			r.note(killed.Name, fmt.Sprintf("tabs of killed %s gone everywhere after %.1fs (%s the %v goal)", killed.Name, d.Seconds(), verdict, ghostGoal))
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	r.note(killed.Name, fmt.Sprintf("tabs of killed %s still shown %v after the kill", killed.Name, ghostTimeout))
}

func (r *runner) ghostsGone(ctx context.Context, killed *cluster.App, keys map[streamKey]bool, dead map[int]bool) bool {
	for _, a := range r.c.Apps() {
		if a == killed || r.isDown(a) {
			continue
		}
		st, err := getState(ctx, r.plain, a.URL())
		if err != nil {
			return false
		}
		held := r.heldCounts(dead)
		for _, c := range st.Regions {
			for _, u := range c.Users {
				k := streamKey{c.Region, u.ID}
				if keys[k] && u.Tabs > held[k] {
					return false
				}
			}
		}
	}
	return true
}

// watchReady polls every running instance's /readyz until stop is closed
// and reports whether any answered 503.
func (r *runner) watchReady(ctx context.Context, stop <-chan struct{}) (saw503 []string) {
	seen := map[string]bool{}
	for {
		for _, a := range r.c.Apps() {
			if r.isDown(a) || seen[a.Name] {
				continue
			}
			if readyStatus(ctx, r.plain, a.URL()) == 503 {
				seen[a.Name] = true
				saw503 = append(saw503, a.Name)
			}
		}
		select {
		case <-stop:
			return saw503
		case <-ctx.Done():
			return saw503
		case <-time.After(250 * time.Millisecond):
		}
	}
}
