// Package chaos drives a local multi-region cluster (internal/cluster) with
// random client traffic and one fault at a time, then heals everything and
// checks the app's invariants against what its clients were told: every
// acknowledged toggle counted once, explicit sets honoured, no acknowledged
// message lost and one feed everywhere, presence exactly the open streams,
// and one lightbulb in every region. cmd/chaos is its command line.
package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"time"

	"globalpresence/internal/cluster"
)

// Config describes one run.
type Config struct {
	Topology string        // cluster.TopologyRedis or cluster.TopologyKeyDB
	Duration time.Duration // of traffic and faults, before healing and checking
	Seed     int64
	Binary   string        // app binary ("": build it)
	Dir      string        // cluster working dir ("": a temp dir, removed)
	Settle   time.Duration // wait after healing before checking (0: 10 s)
	Workers  int           // concurrent clients (0: 3)
	Faults   bool          // inject faults (the command always does; tests may not)
	Log      io.Writer     // progress lines (nil: discard)
}

// Result is what a run saw.
type Result struct {
	Seed       int64
	Ops        int // client operations, including the final phase's
	Faults     int
	Violations []Violation
	Final      Final
	History    *History
}

const (
	maxStreams    = 40 // held at once; more would only load the machine
	maxUsers      = 25
	probeDeadline = 5 * time.Second  // invariant 2: a set shows everywhere within this
	checkRetry    = 10 * time.Second // after settling, retry the check this long before reporting
	// lateRecheck is when a failed check is repeated, past the app's own
	// 30 s full re-read, to tell slow convergence from none. It only adds
	// a note; the violations stand.
	lateRecheck = 35 * time.Second
)

// Regions and instances of every run: three regions, two instances in the
// first so one region has more than one.
var (
	runRegions   = []string{"ams", "iad", "syd"}
	runInstances = map[string]int{"ams": 2}
	// Rate limits and caps are per user and per address; every client here is
	// 127.0.0.1, so they are raised out of the way.
	runAppArgs = []string{
		"-hi-rate", "1000", "-hi-burst", "1000",
		"-lightbulb-rate", "1000", "-lightbulb-burst", "1000",
		"-streams-per-client", "10000", "-conns-per-client", "10000",
	}
)

type runner struct {
	cfg   Config
	c     *cluster.Cluster
	hist  *History
	start time.Time
	logMu sync.Mutex
	// transport has no keep-alive, so a write's error always comes from
	// its own connection, never from a pooled one a fault broke earlier.
	transport *http.Transport
	plain     *http.Client // reads, no cookies

	mu         sync.Mutex
	users      []*User
	streams    map[int]*stream
	nextStream int
	down       map[string]bool // killed instances, by name
	heal       func() error    // of the active fault
	faultCount int

	bg sync.WaitGroup // measurements running beside the faults
}

func (r *runner) logf(format string, args ...any) {
	if r.cfg.Log == nil {
		return
	}
	r.logMu.Lock()
	defer r.logMu.Unlock()
	fmt.Fprintf(r.cfg.Log, "chaos: %6.1fs "+format+"\n", append([]any{time.Since(r.start).Seconds()}, args...)...)
}

func (r *runner) note(instance, text string) {
	r.hist.Add(Op{Kind: KindNote, Instance: instance, Start: time.Now(), End: time.Now(), Body: text})
	r.logf("%s", text)
}

// Run starts the cluster, drives it for cfg.Duration, heals it, checks the
// invariants and stops everything it started, also when ctx ends (then it
// returns ctx's error with the partial result).
func Run(ctx context.Context, cfg Config) (res *Result, err error) {
	if cfg.Settle == 0 {
		cfg.Settle = 10 * time.Second
	}
	if cfg.Workers == 0 {
		cfg.Workers = 3
	}
	r := &runner{
		cfg:       cfg,
		hist:      &History{},
		start:     time.Now(),
		transport: &http.Transport{DisableKeepAlives: true, MaxIdleConnsPerHost: -1},
		streams:   map[int]*stream{},
		down:      map[string]bool{},
	}
	r.plain = &http.Client{Transport: r.transport}
	res = &Result{Seed: cfg.Seed, History: r.hist}

	if cfg.Binary == "" {
		tmp, err := os.MkdirTemp("", "gp-chaos-bin-")
		if err != nil {
			return res, err
		}
		defer os.RemoveAll(tmp)
		r.logf("building the app")
		if cfg.Binary, err = cluster.BuildApp(tmp); err != nil {
			return res, err
		}
	}
	c, err := cluster.Start(ctx, cluster.Config{
		Binary: cfg.Binary, Topology: cfg.Topology, Regions: runRegions, Instances: runInstances,
		Dir: cfg.Dir, AppArgs: runAppArgs, Log: logPrefix{r},
	})
	if err != nil {
		return res, err
	}
	r.c = c
	// Deferred in this order: streams closed, the active fault healed
	// (a SIGSTOPped app would ignore SIGTERM), then the cluster stopped.
	defer func() {
		if serr := c.Stop(); serr != nil {
			r.logf("stopping the cluster: %v", serr)
		}
	}()
	defer r.healNow()
	defer r.closeAll()
	// Background measurements end before anything else is torn down.
	ctx, cancel := context.WithCancel(ctx)
	defer r.bg.Wait()
	defer cancel()

	r.logf("cluster up (%s); driving for %v with seed %d", c.Topology(), cfg.Duration, cfg.Seed)
	r.drive(ctx)
	if err := ctx.Err(); err != nil {
		return r.finish(res), err
	}
	r.healNow()
	r.logf("healed; waiting for every app to be ready")
	if err := r.recover(ctx); err != nil {
		r.note("", "after the final heal: "+err.Error())
	}
	r.logf("settling for %v", cfg.Settle)
	if !sleep(ctx, cfg.Settle) {
		return r.finish(res), ctx.Err()
	}
	probes := r.probeSets(ctx)
	deadline := time.Now().Add(checkRetry)
	for {
		res.Final = Final{Snapshots: r.snapshots(ctx), Held: r.held(), Probes: probes}
		res.Violations = Check(r.hist.Ops(), res.Final)
		if len(res.Violations) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		sleep(ctx, time.Second)
	}
	if len(res.Violations) > 0 && sleep(ctx, lateRecheck) {
		late := Check(r.hist.Ops(), Final{Snapshots: r.snapshots(ctx), Held: r.held(), Probes: probes})
		text := fmt.Sprintf("%d of the violations remain %v later (set probes not repeated)", len(late), lateRecheck)
		for _, v := range late {
			text += "\n  still: " + v.String()
		}
		r.note("", text)
	}
	return r.finish(res), ctx.Err()
}

func (r *runner) finish(res *Result) *Result {
	for _, o := range r.hist.Ops() {
		switch o.Kind {
		case KindToggle, KindSet, KindHi, KindOpen, KindClose:
			res.Ops++
		}
	}
	r.mu.Lock()
	res.Faults = r.faultCount
	r.mu.Unlock()
	return res
}

// logPrefix sends the cluster's lines to the run's log.
type logPrefix struct{ r *runner }

func (l logPrefix) Write(p []byte) (int, error) {
	if l.r.cfg.Log != nil {
		l.r.logMu.Lock()
		defer l.r.logMu.Unlock()
		l.r.cfg.Log.Write(p)
	}
	return len(p), nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// drive runs the clients and the fault injector for cfg.Duration.
func (r *runner) drive(ctx context.Context) {
	dctx, cancel := context.WithTimeout(ctx, r.cfg.Duration)
	defer cancel()
	var wg sync.WaitGroup
	for i := range r.cfg.Workers {
		rng := rand.New(rand.NewSource(r.cfg.Seed*1000 + int64(i)))
		wg.Go(func() { r.client(dctx, rng, i) })
	}
	if r.cfg.Faults {
		rng := rand.New(rand.NewSource(r.cfg.Seed*1000 + 999))
		wg.Go(func() { r.injectFaults(dctx, ctx, rng) })
	}
	wg.Go(func() {
		for sleep(dctx, 10*time.Second) {
			r.mu.Lock()
			n, faults := len(r.streams), r.faultCount
			r.mu.Unlock()
			r.logf("%d ops so far, %d streams open, %d faults", len(r.hist.Ops()), n, faults)
		}
	})
	wg.Wait()
}

// client is one worker issuing random operations.
func (r *runner) client(ctx context.Context, rng *rand.Rand, worker int) {
	for n := 0; ; n++ {
		if !sleep(ctx, time.Duration(50+rng.Intn(200))*time.Millisecond) {
			return
		}
		r.reapEnded()
		a := r.pickApp(rng)
		if a == nil {
			continue
		}
		u := r.pickUser(rng, a.URL())
		o := Op{Instance: a.Name, Region: a.Region, User: u.ID}
		switch p := rng.Intn(100); {
		case p < 25:
			o.Kind = KindToggle
			u.post(ctx, a.URL(), "/lightbulb", nil, &o)
		case p < 35:
			o.Kind, o.Arg = KindSet, pick(rng, []string{"on", "off"})
			u.post(ctx, a.URL(), "/lightbulb", url.Values{"state": {o.Arg}}, &o)
		case p < 55:
			o.Kind, o.Arg = KindHi, fmt.Sprintf("s%d-w%d-%d", r.cfg.Seed, worker, n)
			u.post(ctx, a.URL(), "/hi", url.Values{"text": {o.Arg}}, &o)
		case p < 80:
			r.open(ctx, u, a)
			continue
		default:
			r.closeRandom(rng)
			continue
		}
		if ctx.Err() != nil && o.Err != "" {
			// Cut off by the end of the run, not by a fault: still
			// ambiguous, so it is kept.
			o.Err = "run ended: " + o.Err
		}
		r.hist.Add(o)
	}
}

// pickApp picks a running instance (a frozen one counts: a load balancer
// would not know).
func (r *runner) pickApp(rng *rand.Rand) *cluster.App {
	var up []*cluster.App
	for _, a := range r.c.Apps() {
		if !r.isDown(a) {
			up = append(up, a)
		}
	}
	if len(up) == 0 {
		return nil
	}
	return pick(rng, up)
}

func (r *runner) pickUser(rng *rand.Rand, base string) *User {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.users) < 3 || (len(r.users) < maxUsers && rng.Intn(4) == 0) {
		r.users = append(r.users, newUser(rng, base, r.transport))
	}
	return pick(rng, r.users)
}

func (r *runner) isDown(a *cluster.App) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.down[a.Name]
}

func (r *runner) setDown(a *cluster.App, down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down[a.Name] = down
}

// open opens a stream for u on a, unless enough are open.
func (r *runner) open(ctx context.Context, u *User, a *cluster.App) {
	r.mu.Lock()
	if len(r.streams) >= maxStreams {
		r.mu.Unlock()
		return
	}
	r.nextStream++
	id := r.nextStream
	r.mu.Unlock()
	o := Op{Kind: KindOpen, Instance: a.Name, Region: a.Region, User: u.ID, Stream: id}
	// Streams outlive the drive phase, so they hang off the run's context.
	s, err := openStream(context.WithoutCancel(ctx), id, u, a.Name, a.Region, a.URL(), &o)
	if err != nil && o.Err == "" {
		o.Err = err.Error()
	}
	if s != nil {
		r.mu.Lock()
		r.streams[id] = s
		r.mu.Unlock()
	}
	r.hist.Add(o)
}

func (r *runner) closeRandom(rng *rand.Rand) {
	r.mu.Lock()
	var ids []int
	for id := range r.streams {
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		r.mu.Unlock()
		return
	}
	// Map order is random but not seeded: sort for the seed's sake.
	slices.Sort(ids)
	s := r.streams[pick(rng, ids)]
	delete(r.streams, s.ID)
	r.mu.Unlock()
	o := Op{Kind: KindClose, Instance: s.Instance, Region: s.Region, User: s.User.ID, Stream: s.ID, Start: time.Now()}
	s.close()
	o.End = time.Now()
	r.hist.Add(o)
}

// reapEnded drops streams the server ended (or whose instance died): the
// checker no longer holds them, so they must leave the cards.
func (r *runner) reapEnded() {
	r.mu.Lock()
	var ended []*stream
	for id, s := range r.streams {
		if gone, _ := s.ended(); gone {
			ended = append(ended, s)
			delete(r.streams, id)
		}
	}
	r.mu.Unlock()
	for _, s := range ended {
		_, why := s.ended()
		o := Op{Kind: KindEnded, Instance: s.Instance, Region: s.Region, User: s.User.ID, Stream: s.ID, Start: time.Now(), End: time.Now()}
		if why != nil {
			o.Err = why.Error()
		}
		r.hist.Add(o)
	}
}

func (r *runner) closeAll() {
	r.mu.Lock()
	all := r.streams
	r.streams = map[int]*stream{}
	r.mu.Unlock()
	for _, s := range all {
		s.close()
	}
}

// heldCounts is the open streams per region and user, leaving out the
// dead ones (on a killed instance; the reader may not have seen them end
// yet). Streams opened on the instance after its restart count.
func (r *runner) heldCounts(dead map[int]bool) map[regionUser]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[regionUser]int{}
	for _, s := range r.streams {
		if !dead[s.ID] {
			m[regionUser{s.Region, s.User.ID}]++
		}
	}
	return m
}

func (r *runner) held() []HeldStream {
	r.reapEnded()
	r.mu.Lock()
	defer r.mu.Unlock()
	var hs []HeldStream
	for _, s := range r.streams {
		hs = append(hs, HeldStream{ID: s.ID, User: s.User.ID, Region: s.Region, Instance: s.Instance, LastTabs: s.tabs()})
	}
	return hs
}

func (r *runner) snapshots(ctx context.Context) []Snapshot {
	var snaps []Snapshot
	for _, a := range r.c.Apps() {
		st, err := getState(ctx, r.plain, a.URL())
		s := Snapshot{Instance: a.Name, Region: a.Region, State: st}
		if err != nil {
			s.Err = err.Error()
		}
		snaps = append(snaps, s)
	}
	return snaps
}

// injectFaults breaks one thing at a time until dctx ends, heals it and
// waits for the cluster to recover before the next. Heals run under the
// run's ctx, so the end of the drive phase does not cut them short.
func (r *runner) injectFaults(dctx, ctx context.Context, rng *rand.Rand) {
	faults := r.faults()
	for {
		if !sleep(dctx, time.Duration(1000+rng.Intn(3000))*time.Millisecond) {
			return
		}
		f := pick(rng, faults)
		hold := time.Duration(1000+rng.Intn(5000)) * time.Millisecond
		if f.name == "pause-app" {
			hold = time.Duration(1000+rng.Intn(int(maxPause/time.Millisecond)-1000)) * time.Millisecond
		}
		o := Op{Kind: KindFault, Arg: f.name, Start: time.Now()}
		var stopWatch chan struct{}
		var watched chan []string
		if f.store {
			stopWatch, watched = make(chan struct{}), make(chan []string, 1)
			go func() { watched <- r.watchReady(ctx, stopWatch) }()
		}
		what, heal, err := f.apply(ctx, rng)
		if err != nil {
			o.Err = err.Error()
			o.End = time.Now()
			r.hist.Add(o)
			r.logf("fault %s failed: %v", f.name, err)
			if stopWatch != nil {
				close(stopWatch)
			}
			continue
		}
		r.mu.Lock()
		r.heal = heal
		r.faultCount++
		r.mu.Unlock()
		o.Body = what
		r.logf("fault: %s for %v", what, hold.Round(100*time.Millisecond))
		sleep(dctx, hold)
		if herr := r.healNow(); herr != nil {
			o.Err = "heal: " + herr.Error()
		}
		o.End = time.Now()
		if err := r.recover(ctx); err != nil {
			o.Err = joinErr(o.Err, "recovery: "+err.Error())
		}
		if stopWatch != nil {
			close(stopWatch)
			if saw := <-watched; len(saw) > 0 {
				o.Body += fmt.Sprintf("; /readyz 503 on %v", saw)
			} else {
				o.Body += "; /readyz stayed 200"
			}
		}
		r.hist.Add(o)
		r.logf("healed: %s (%s)", o.Body, errOr(o.Err, "recovered"))
	}
}

func joinErr(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

func errOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// healNow heals the active fault, if any.
func (r *runner) healNow() error {
	r.mu.Lock()
	heal := r.heal
	r.heal = nil
	r.mu.Unlock()
	if heal == nil {
		return nil
	}
	return heal()
}

// recover waits, bounded, until every app answers /readyz 200 and the
// KeyDB mesh has synced.
func (r *runner) recover(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, recoverTimeout)
	defer cancel()
	return errors.Join(r.c.WaitReady(rctx), r.c.WaitStoreSynced(rctx))
}

// probeSets is the quiet final phase: through each region in turn, set the
// bulb on, then off, and see whether every instance shows it in time.
func (r *runner) probeSets(ctx context.Context) []SetProbe {
	u := newUser(rand.New(rand.NewSource(r.cfg.Seed)), r.c.Apps()[0].URL(), r.transport)
	var probes []SetProbe
	for _, reg := range r.c.Regions {
		a := reg.Apps[0]
		for _, on := range []bool{true, false} {
			state := map[bool]string{true: "on", false: "off"}[on]
			o := Op{Kind: KindSet, Instance: a.Name, Region: a.Region, User: u.ID, Arg: state}
			u.post(ctx, a.URL(), "/lightbulb", url.Values{"state": {state}}, &o)
			r.hist.Add(o)
			p := SetProbe{Via: a.Name, On: on, Status: o.Status, Err: o.Err}
			if o.Err == "" && o.Status == http.StatusOK {
				p.NotConverged = r.waitLight(ctx, on)
			}
			probes = append(probes, p)
			r.logf("final set %s via %s: status %d, not converged: %v", state, a.Name, o.Status, p.NotConverged)
		}
	}
	return probes
}

// waitLight polls every instance until all show the bulb on (or off), for
// at most probeDeadline; it returns those that did not, with what they showed.
func (r *runner) waitLight(ctx context.Context, on bool) []string {
	deadline := time.Now().Add(probeDeadline)
	for {
		var late []string
		for _, a := range r.c.Apps() {
			st, err := getState(ctx, r.plain, a.URL())
			switch {
			case err != nil:
				late = append(late, a.Name+": "+err.Error())
			case st.Lightbulb.On != on:
				late = append(late, fmt.Sprintf("%s: on=%v", a.Name, st.Lightbulb.On))
			}
		}
		if len(late) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return late
		}
		time.Sleep(100 * time.Millisecond)
	}
}
