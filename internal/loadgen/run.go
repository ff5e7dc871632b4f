// Package loadgen is the load generator behind cmd/loadgen: it holds many
// SSE streams open against the app (spread over worker processes, each under
// the 20,000-file limit), posts timestamped messages through one instance,
// and reports how long each took to reach every stream, beside the same
// workload run against the floor server (internal/floor).
package loadgen

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"globalpresence/internal/floor"
)

// MaxPerWorker keeps a worker process under the machine's 20,000 open files,
// with room for its pipes and the runtime's own descriptors.
const MaxPerWorker = 19000

type options struct {
	urls       []string
	postURL    string
	postBase   string // where posts go: -post-url, else the first -url
	conns      int
	eventsPerS float64
	floorRate  float64 // -floor-events-per-s; <0: as -events-per-s
	flipsPerS  float64
	churnPerS  float64
	duration   time.Duration
	grace      time.Duration
	open       time.Duration
	pid        int
	rampPerS   float64
	perWorker  int
	workers    string
	floor      bool
	warm       bool // run the same streams in one room first: the idle baseline after a peak of the same size
	stuck      int
	rooms      int           // 0: every stream in the default room (/events)
	bigRoom    int           // viewers of room 0, with -rooms
	roomMax    int           // most viewers of every other room
	settle     time.Duration // after closing, how long to wait for the server to forget its rooms
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func parseOptions(args []string, stderr io.Writer) (options, []Target, error) {
	var o options
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var((*listFlag)(&o.urls), "url", "app `URL`s, repeatable or comma-separated; streams are spread over them, posts go to the first (loopback only)")
	fs.IntVar(&o.conns, "conns", 1000, "measured SSE streams to hold open")
	fs.Float64Var(&o.eventsPerS, "events-per-s", 5, "hi posts per second, each timed at every stream")
	fs.Float64Var(&o.flipsPerS, "flips-per-s", 0, "lightbulb flips per second, extra load (not timed)")
	fs.Float64Var(&o.churnPerS, "churn-per-s", 0, "extra tabs opened per second, each closed after 0.5-2 s (with -rooms, in the room of a random stream)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long to send events and churn (at most 1h)")
	fs.DurationVar(&o.grace, "grace", 2*time.Second, "how long after the last post an event may still arrive")
	fs.DurationVar(&o.open, "open-timeout", openTimeout, "how long a stream may wait for its response header, and then for its snapshot")
	fs.IntVar(&o.pid, "pid", 0, "`PID` of the app process, for its RSS per connection (-1 in the summary without it)")
	fs.Float64Var(&o.rampPerS, "ramp-per-s", 2000, "streams opened per second, across all workers")
	fs.IntVar(&o.perWorker, "per-worker", MaxPerWorker, "streams per worker process (at most 19000)")
	fs.IntVar(&o.stuck, "stuck", 0, "extra streams that never read (slow clients), open during the measuring window")
	fs.StringVar(&o.postURL, "post-url", "", "app `URL` to post to (default: the first -url), e.g. another region's instance to time the cross-region path (loopback only)")
	fs.StringVar(&o.workers, "workers", "process", "`mode`: process (re-exec itself per worker) or inproc (one process, for tests)")
	fs.BoolVar(&o.floor, "floor", false, "first run the same workload against the floor server, in a child process")
	fs.Float64Var(&o.floorRate, "floor-events-per-s", -1, "with -floor: posts per second to the floor (default: -events-per-s); with -rooms each post reaches only its room, while on the floor it reaches every stream")
	fs.IntVar(&o.rooms, "rooms", 0, "spread the streams over this many rooms (/rooms/lg/rN); 0: all in the default room")
	fs.IntVar(&o.bigRoom, "big-room", 0, "with -rooms: viewers of one large room; every other room gets 1 to -room-max")
	fs.IntVar(&o.roomMax, "room-max", 20, "with -rooms: most viewers of a room other than the large one")
	fs.DurationVar(&o.settle, "settle", 0, "after closing every stream, wait up to this long for the app's gp_rooms to reach 0 and (with -pid) its RSS to come within 10% of idle")
	fs.BoolVar(&o.warm, "warm", false, "with -pid and -settle: first hold the same streams on the app in one room (1 post/s) and close them; "+
		"the measured run's idle is then the app's once it has served the same peak without rooms")
	if err := fs.Parse(args); err != nil {
		return o, nil, err
	}
	if fs.NArg() > 0 {
		return o, nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	// The URLs are checked first, before anything can be dialled.
	targets, err := parseTargets(o.urls)
	switch {
	case err != nil:
		return o, nil, err
	case len(targets) == 0 && !o.floor:
		return o, nil, errors.New("need -url (or -floor alone)")
	case o.conns < 1 || o.conns > 500000:
		return o, nil, errors.New("-conns must be 1..500000")
	case o.duration <= 0 || o.duration > time.Hour:
		return o, nil, errors.New("-duration must be more than 0 and at most 1h")
	case o.grace < 0 || o.grace > time.Minute:
		return o, nil, errors.New("-grace must be 0..1m")
	case o.open <= 0 || o.open > 2*time.Minute:
		return o, nil, errors.New("-open-timeout must be more than 0 and at most 2m")
	case o.eventsPerS < 0 || o.eventsPerS > 10000, o.flipsPerS < 0 || o.flipsPerS > 10000, o.floorRate > 10000:
		return o, nil, errors.New("-events-per-s and -flips-per-s must be 0..10000")
	case o.churnPerS < 0 || o.churnPerS > 5000:
		return o, nil, errors.New("-churn-per-s must be 0..5000")
	case o.rampPerS <= 0:
		return o, nil, errors.New("-ramp-per-s must be positive")
	case o.perWorker < 1 || o.perWorker > MaxPerWorker:
		return o, nil, fmt.Errorf("-per-worker must be 1..%d (the file limit)", MaxPerWorker)
	case o.workers != "process" && o.workers != "inproc":
		return o, nil, errors.New("-workers must be process or inproc")
	case o.workers == "inproc" && o.conns > o.perWorker:
		return o, nil, fmt.Errorf("-workers=inproc holds every stream in this process: -conns must be at most -per-worker (%d)", o.perWorker)
	case o.pid < 0:
		return o, nil, errors.New("-pid must be positive")
	case o.stuck < 0 || o.stuck > 1000:
		return o, nil, errors.New("-stuck must be 0..1000")
	case o.settle < 0 || o.settle > 10*time.Minute:
		return o, nil, errors.New("-settle must be 0..10m")
	case o.warm && (o.pid == 0 || o.settle == 0 || len(targets) == 0):
		return o, nil, errors.New("-warm needs -url, -pid and -settle: it sets the idle RSS the memory after is judged on")
	}
	if _, err := planRooms(o, nil); err != nil {
		return o, nil, err
	}
	if len(targets) > 0 {
		o.postBase = targets[0].Base
	}
	if o.postURL != "" {
		post, err := parseTargets([]string{o.postURL})
		if err != nil {
			return o, nil, err
		}
		o.postBase = post[0].Base
	}
	if o.pid > 0 {
		if _, err := readRSS(o.pid); err != nil {
			return o, nil, fmt.Errorf("-pid %d: %v", o.pid, err)
		}
	}
	return o, targets, nil
}

// Run is the load generator: the summary lines go to stdout, progress and
// diagnostics to stderr.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, targets, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	var floorOut *outcome
	if o.floor {
		fo, err := runFloor(ctx, o, stderr)
		if err != nil {
			return fmt.Errorf("floor: %w", err)
		}
		fmt.Fprintln(stdout, fo.line("loadgen-floor", nil))
		floorOut = &fo
	}
	if len(targets) == 0 {
		return nil
	}
	if o.warm {
		// The same peak of streams, without rooms: what the app keeps
		// after it (the runtime's high-water marks) is its idle from then
		// on, which the measured run's memory after is compared with.
		wo := o
		wo.rooms, wo.bigRoom, wo.eventsPerS = 0, 0, min(o.eventsPerS, 1)
		wout, err := phase(ctx, wo, "warm", targets, o.pid, stderr)
		if err != nil {
			return fmt.Errorf("warm: %w", err)
		}
		fmt.Fprintln(stdout, wout.line("loadgen-warm", nil))
	}
	out, err := phase(ctx, o, "app", targets, o.pid, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, out.line("loadgen", floorOut))
	return nil
}

// runFloor runs the workload against a fresh floor server: a child process
// with its own RSS and file limit, or a goroutine with -workers=inproc.
func runFloor(ctx context.Context, o options, stderr io.Writer) (outcome, error) {
	var u string
	pid := 0
	if o.workers == "inproc" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return outcome{}, err
		}
		go func() { _ = floor.Serve(ln) }()
		defer ln.Close()
		u = "http://" + ln.Addr().String()
	} else {
		exe, err := os.Executable()
		if err != nil {
			return outcome{}, err
		}
		f, err := startFloor(ctx, exe, stderr)
		if err != nil {
			return outcome{}, err
		}
		defer f.close()
		u, pid = f.url, f.pid()
	}
	targets, err := parseTargets([]string{u})
	if err != nil {
		return outcome{}, err
	}
	o.postBase = targets[0].Base // the floor takes its own posts
	// The floor has one topic: the same streams and posts, all in it.
	o.rooms, o.bigRoom, o.settle = 0, 0, 0
	if o.floorRate >= 0 {
		o.eventsPerS = o.floorRate
	}
	return phase(ctx, o, "floor", targets, pid, stderr)
}

// outcome is one run's figures.
type outcome struct {
	conns, events, lost                 int64
	p50, p90, p99, max                  float64 // ms
	deliveriesPerS                      float64
	rssPerConn                          float64 // KiB; -1: unknown
	presence                            float64
	dropped, failed                     int64
	postErrors, flips, churned, churnKO int64
	leaked, rooms, roomsLossy           int64
	idleRSS, rssAfter, roomsAfter       int64 // KiB, KiB, rooms; -1: not measured
	settleS                             float64
}

func (r outcome) line(prefix string, fl *outcome) string {
	rss := "-1"
	if r.rssPerConn >= 0 {
		rss = strconv.FormatFloat(r.rssPerConn, 'f', 2, 64)
	}
	s := fmt.Sprintf("%s: conns=%d events=%d p50_ms=%.2f p99_ms=%.2f max_ms=%.2f deliveries_per_s=%.0f lost=%d rss_kib_per_conn=%s presence_msgs_per_client_s=%.2f p90_ms=%.2f dropped=%d failed=%d post_errors=%d flips=%d churned=%d churn_failed=%d",
		prefix, r.conns, r.events, r.p50, r.p99, r.max, r.deliveriesPerS, r.lost, rss, r.presence,
		r.p90, r.dropped, r.failed, r.postErrors, r.flips, r.churned, r.churnKO)
	if fl != nil {
		ratio := func(a, b float64) string {
			if b <= 0 {
				return "-"
			}
			return strconv.FormatFloat(a/b, 'f', 2, 64)
		}
		s += fmt.Sprintf(" p50_x_floor=%s p99_x_floor=%s deliveries_x_floor=%s",
			ratio(r.p50, fl.p50), ratio(r.p99, fl.p99), ratio(r.deliveriesPerS, fl.deliveriesPerS))
	}
	return s + fmt.Sprintf(" leaked=%d rooms=%d rooms_lossy=%d idle_rss_kib=%d rss_after_kib=%d rooms_after=%d settle_s=%.1f",
		r.leaked, r.rooms, r.roomsLossy, r.idleRSS, r.rssAfter, r.roomsAfter, r.settleS)
}

// split shares n streams over as few workers as hold at most per each.
func split(n, per int) []int {
	k := (n + per - 1) / per
	sizes := make([]int, k)
	for i := range sizes {
		sizes[i] = n / k
		if i < n%k {
			sizes[i]++
		}
	}
	return sizes
}

// phase runs the whole workload once against targets: open the streams,
// measure RSS, post and churn for the duration, wait the grace, collect.
func phase(ctx context.Context, o options, name string, targets []Target, pid int, stderr io.Writer) (outcome, error) {
	logf := func(format string, a ...any) {
		fmt.Fprintf(stderr, "loadgen: %s: "+format+"\n", append([]any{name}, a...)...)
	}
	var tag [4]byte
	_, _ = rand.Read(tag[:])
	run := hex.EncodeToString(tag[:])
	maxEvents := int(math.Ceil(o.eventsPerS*o.duration.Seconds())) + 1
	rampTime := time.Duration(float64(o.conns) / o.rampPerS * float64(time.Second))
	settle := 300 * time.Millisecond
	if pid > 0 {
		// Let the server's allocations settle before reading its RSS: the
		// app collects once a burst of opens has been quiet for 0.5 s,
		// which takes up to 0.6 s at 19,000 streams in 5,000 rooms.
		settle = 2 * time.Second
	}
	rampLimit := rampTime + openTimeout + 2*o.open + 30*time.Second
	maxLife := rampLimit + settle + o.duration + o.grace + time.Minute

	rssBefore := int64(-1)
	if pid > 0 {
		var err error
		if rssBefore, err = readRSS(pid); err != nil {
			return outcome{}, err
		}
	}

	plan, err := planRooms(o, mrand.New(mrand.NewPCG(mrand.Uint64(), mrand.Uint64())))
	if err != nil {
		return outcome{}, err
	}
	numRooms := max(o.rooms, 1)
	sizes := split(o.conns, o.perWorker)
	var exe string
	if o.workers == "process" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return outcome{}, err
		}
	}
	logf("opening %d streams to %d URL(s) at %g/s in %d worker(s) (%s)", o.conns, len(targets), o.rampPerS, len(sizes), o.workers)
	var handles []handle
	defer func() {
		for _, h := range handles {
			h.close()
		}
	}()
	off := 0
	for _, n := range sizes {
		cfg := workerConfig{
			Targets: targets, Conns: n, Offset: off, RampPerS: o.rampPerS * float64(n) / float64(o.conns),
			Run: run, MaxEvents: maxEvents, MaxLife: maxLife, Open: o.open, NumRooms: numRooms,
		}
		if plan != nil {
			cfg.Rooms = plan[off : off+n]
		}
		off += n
		if o.workers == "inproc" {
			handles = append(handles, &local{w: newWorker(cfg)})
			continue
		}
		r, err := startRemote(exe, cfg, stderr)
		if err != nil {
			return outcome{}, err
		}
		handles = append(handles, r)
	}

	// Ramp every worker at once, reporting progress.
	rctx, cancel := context.WithTimeout(ctx, rampLimit)
	defer cancel()
	readies := make([]report, len(handles))
	errs := make([]error, len(handles))
	var wg sync.WaitGroup
	for i, h := range handles {
		wg.Go(func() { readies[i], errs[i] = h.ramp(rctx) })
	}
	rampDone := make(chan struct{})
	go func() { wg.Wait(); close(rampDone) }()
	tick := time.NewTicker(2 * time.Second)
	for waiting := true; waiting; {
		select {
		case <-rampDone:
			waiting = false
		case <-tick.C:
			var open, failed int64
			for _, h := range handles {
				a, b := h.progress()
				open, failed = open+a, failed+b
			}
			logf("%d/%d streams open, %d failed", open, o.conns, failed)
		}
	}
	tick.Stop()
	if err := errors.Join(errs...); err != nil {
		return outcome{}, fmt.Errorf("opening streams: %w", err)
	}
	var open, failed int64
	var samples []string
	for _, r := range readies {
		open, failed = open+r.Open, failed+r.Failed
		samples = append(samples, r.Errors...)
	}
	logf("%d streams open, %d failed", open, failed)
	for _, e := range samples[:min(len(samples), 3)] {
		logf("a failure: %s", e)
	}
	if open == 0 {
		return outcome{}, errors.New("no stream opened")
	}

	if !sleepCtx(ctx, settle) {
		return outcome{}, ctx.Err()
	}
	rssAfter := int64(-1)
	if pid > 0 {
		var err error
		if rssAfter, err = readRSS(pid); err != nil {
			return outcome{}, err
		}
		logf("server RSS %d KiB before, %d KiB with the streams open", rssBefore, rssAfter)
	}

	stuck, err := openStuck(ctx, targets, o.stuck)
	defer func() {
		for _, c := range stuck {
			c.Close()
		}
	}()
	if err != nil {
		return outcome{}, err
	}
	if len(stuck) > 0 {
		logf("%d streams open that never read", len(stuck))
	}

	// The measuring window.
	for _, h := range handles {
		if err := h.command("start"); err != nil {
			return outcome{}, err
		}
	}
	start := time.Now()
	end := start.Add(o.duration)
	client := postClient()
	defer client.CloseIdleConnections()
	accepted := make([]atomic.Bool, maxEvents)
	eventRoom := make([]int32, maxEvents) // the room each event was posted to
	// randomRoom is the room of a random stream: rooms get posts and churn
	// in proportion to their viewers.
	randomRoom := func() int32 {
		if plan == nil {
			return 0
		}
		return plan[mrand.N(len(plan))]
	}
	var postErrors, flips atomic.Int64
	var firstPostErr atomic.Value
	postErr := func(err error) {
		postErrors.Add(1)
		firstPostErr.CompareAndSwap(nil, err.Error())
	}
	var senders, churners sync.WaitGroup
	var churned, churnKO atomic.Int64
	senders.Go(func() {
		pace(ctx, start, end, o.eventsPerS, maxEvents, 1000, &senders, &postErrors, func(i int) {
			room := randomRoom()
			eventRoom[i] = room
			text, to := fmt.Sprintf("lg:%s:%d:%d", run, i, time.Now().UnixNano()), o.postBase+"/hi"
			if plan != nil {
				text += "@" + strconv.Itoa(int(room)) // so a stream can tell another room's post
				to = o.postBase + "/rooms/" + roomName(int(room)) + "/hi"
			}
			if err := post(ctx, client, to, url.Values{"text": {text}}, http.StatusCreated); err != nil {
				postErr(err)
				return
			}
			accepted[i].Store(true)
		})
	})
	senders.Go(func() {
		pace(ctx, start, end, o.flipsPerS, math.MaxInt, 1000, &senders, &postErrors, func(int) {
			if err := post(ctx, client, o.postBase+"/lightbulb", nil, http.StatusOK); err != nil {
				postErr(err)
				return
			}
			flips.Add(1)
		})
	})
	churners.Go(func() {
		churn(ctx, targets, plan != nil, randomRoom, o.churnPerS, start, end, &churners, &churned, &churnKO)
	})
	senders.Wait()
	for _, h := range handles {
		if err := h.command("end"); err != nil {
			return outcome{}, err
		}
	}
	window := time.Since(start)
	if e, ok := firstPostErr.Load().(string); ok {
		logf("%d posts failed; the first: %s", postErrors.Load(), e)
	}
	sleepCtx(ctx, o.grace)
	churners.Wait()

	logf("collecting results")
	fctx, cancel2 := context.WithTimeout(ctx, time.Minute)
	defer cancel2()
	var hist merged
	got := make([]int64, maxEvents)
	measured := make([]int64, numRooms) // streams per room when the window opened
	var out outcome
	for _, h := range handles {
		r, err := h.finish(fctx)
		if err != nil {
			return outcome{}, err
		}
		hist.add(r.Hist, r.MaxUS)
		for i, n := range r.Got[:min(len(r.Got), maxEvents)] {
			got[i] += n
		}
		out.conns += r.Measured
		out.dropped += r.Dropped
		out.failed += r.Failed
		out.presence += float64(r.Regions)
		out.leaked += r.Leaked
		for room, n := range r.MeasuredRooms[:min(len(r.MeasuredRooms), numRooms)] {
			measured[room] += n
		}
	}
	var expected int64 // (event, stream) pairs that should have arrived
	lossy := make(map[int32]bool)
	for i := range accepted {
		if accepted[i].Load() {
			out.events++
			want := measured[eventRoom[i]]
			expected += want
			if lost := max(want-got[i], 0); lost > 0 {
				out.lost += lost
				lossy[eventRoom[i]] = true
			}
		}
	}
	out.rooms, out.roomsLossy = int64(numRooms), int64(len(lossy))
	out.p50, out.p90, out.p99 = hist.quantile(0.50), hist.quantile(0.90), hist.quantile(0.99)
	out.max = float64(hist.maxUS) / 1000
	out.deliveriesPerS = float64(expected-out.lost) / o.duration.Seconds()
	out.rssPerConn = -1
	if pid > 0 {
		out.rssPerConn = float64(rssAfter-rssBefore) / float64(open)
	}
	if out.conns > 0 {
		out.presence /= float64(out.conns) * window.Seconds()
	}
	out.postErrors, out.flips, out.churned, out.churnKO = postErrors.Load(), flips.Load(), churned.Load(), churnKO.Load()
	out.idleRSS, out.rssAfter, out.roomsAfter = rssBefore, -1, -1
	if o.settle > 0 { // every stream is closed: what do empty rooms cost?
		logf("waiting up to %s for the app to forget its rooms", o.settle)
		st := awaitSettled(ctx, targets, pid, rssBefore, o.settle)
		out.rssAfter, out.roomsAfter, out.settleS = st.rss, st.rooms, st.took.Seconds()
	}
	return out, nil
}

// pace calls fn(i) in its own goroutine (counted in wg) at rate per second
// from start until end, at most limit times and never more than inFlight at
// once: a call beyond that is skipped (the server is not keeping up) and
// counted in skipped.
func pace(ctx context.Context, start, end time.Time, rate float64, limit, inFlight int, wg *sync.WaitGroup, skipped *atomic.Int64, fn func(i int)) {
	if rate <= 0 {
		return
	}
	sem := make(chan struct{}, inFlight)
	for i := 0; i < limit; i++ {
		at := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		if !at.Before(end) || !sleepCtx(ctx, time.Until(at)) {
			return
		}
		select {
		case sem <- struct{}{}:
		default:
			skipped.Add(1)
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			fn(i)
		})
	}
}

// postClient makes each request on a new connection from its own source
// address: the app limits posts per address and per user, and a request
// without a cookie is a new user. It never follows a redirect or uses a
// proxy, so nothing can lead it off loopback.
func postClient() *http.Client {
	var k atomic.Int64
	return &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{
			Proxy:             nil,
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				d := net.Dialer{Timeout: openTimeout}
				if ap, err := netip.ParseAddrPort(addr); err == nil && ap.Addr().Is4() {
					d.LocalAddr = &net.TCPAddr{IP: postSource(int(k.Add(1)))}
				}
				return dialLoopback(ctx, &d, addr)
			},
		},
	}
}

func post(ctx context.Context, c *http.Client, u string, form url.Values, want int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != want {
		return fmt.Errorf("POST %s: %s %s", u, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// churn opens extra tabs at rate per second until end, each read and
// discarded for 0.5–2 s and then closed: presence changes for the measured
// streams to be told about. With rooms, each opens in the room room picks.
func churn(ctx context.Context, targets []Target, rooms bool, room func() int32, rate float64, start, end time.Time, wg *sync.WaitGroup, opened, failed *atomic.Int64) {
	pace(ctx, start, end, rate, math.MaxInt, 4000, wg, failed, func(i int) {
		t := &targets[i%len(targets)]
		path := t.Path
		if rooms {
			path = roomPath(t, int(room()), "/events?format=json")
		}
		c, body, err := openStream(ctx, t, streamRequest(*t, path), churnSource(i), openTimeout)
		if err != nil {
			failed.Add(1)
			return
		}
		defer c.Close()
		opened.Add(1)
		_ = c.SetReadDeadline(time.Now().Add(500*time.Millisecond + mrand.N(1500*time.Millisecond)))
		_, _ = io.Copy(io.Discard, body)
	})
}

// readRSS is a process's resident set in KiB, from /proc/PID/status.
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// openStuck opens n streams that are never read, with a small receive
// buffer so the server's writes to them soon stall: the slow clients the
// others must not notice.
func openStuck(ctx context.Context, targets []Target, n int) ([]net.Conn, error) {
	var conns []net.Conn
	for i := range n {
		t := &targets[i%len(targets)]
		d := net.Dialer{Timeout: openTimeout}
		if t.V4 {
			d.LocalAddr = &net.TCPAddr{IP: stuckSource(i)}
		}
		c, err := dialLoopback(ctx, &d, t.Addr)
		if err != nil {
			return conns, err
		}
		conns = append(conns, c)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(1024)
		}
		if _, err := c.Write(streamRequest(*t, t.Path)); err != nil {
			return conns, err
		}
	}
	return conns, nil
}
