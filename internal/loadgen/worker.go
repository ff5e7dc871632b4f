package loadgen

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// openTimeout bounds a stream's dial, and the default wait for its response
// header and for its snapshot (-open-timeout).
const openTimeout = 10 * time.Second

// workerConfig is one worker's share of the streams; it crosses to a worker
// process as JSON.
type workerConfig struct {
	Targets   []Target
	Conns     int
	Offset    int // global index of the first stream: picks its target and source address
	RampPerS  float64
	Run       string // this run's tag in posted texts, so older messages are ignored
	MaxEvents int
	MaxLife   time.Duration // a worker process exits after this, whatever happens
	Open      time.Duration // wait for a stream's header, then for its snapshot
	// Rooms is the room of each of this worker's streams (nil: every one
	// in the default room); NumRooms how many rooms there are.
	Rooms    []int32 `json:",omitempty"`
	NumRooms int
}

// report is what a worker tells the parent: progress while ramping, then
// its final counts. Only "result" carries the measurements.
type report struct {
	Type     string `json:"type"`
	Open     int64  `json:"open"`    // streams that got their snapshot
	Failed   int64  `json:"failed"`  // could not connect, or no snapshot in time
	Dropped  int64  `json:"dropped"` // closed by the server after the snapshot
	Measured int64  `json:"measured,omitempty"`
	Regions  int64  `json:"regions,omitempty"` // regions events in the window, snapshots excluded
	Leaked   int64  `json:"leaked,omitempty"`  // (event, stream) pairs of another room's post seen
	// MeasuredRooms is, per room, the streams open when the window opened.
	MeasuredRooms []int64     `json:"measured_rooms,omitempty"`
	Got           []int64     `json:"got,omitempty"` // per event: streams it reached
	Hist          [][2]uint64 `json:"hist,omitempty"`
	MaxUS         int64       `json:"max_us,omitempty"`
	Errors        []string    `json:"errors,omitempty"` // the first few failures
}

// worker holds up to 19,000 streams in one process: one goroutine and two
// small buffers per stream, with all counters shared and atomic.
type worker struct {
	cfg    workerConfig
	marker []byte   // `"lg:RUN:` starts a text posted by this run
	reqs   [][]byte // the GET request per target, without rooms

	open, failed, dropped, alive atomic.Int64
	measured                     atomic.Int64
	counting                     atomic.Bool
	regions, leaked              atomic.Int64
	aliveRooms, measuredRooms    []atomic.Int64 // per room
	got                          []atomic.Int64
	hist                         histogram

	ready    sync.WaitGroup // every stream is open (snapshot read) or failed
	readers  sync.WaitGroup
	stopping atomic.Bool
	cancel   context.CancelFunc // aborts dials in progress at stop
	ctx      context.Context

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	errs  []string
}

func newWorker(cfg workerConfig) *worker {
	w := &worker{
		cfg:    cfg,
		marker: []byte(`"lg:` + cfg.Run + ":"),
		got:    make([]atomic.Int64, cfg.MaxEvents),
		// Per room, streams open now and when the window opened.
		aliveRooms:    make([]atomic.Int64, max(cfg.NumRooms, 1)),
		measuredRooms: make([]atomic.Int64, max(cfg.NumRooms, 1)),
		conns:         make(map[net.Conn]struct{}, cfg.Conns),
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	for _, t := range cfg.Targets {
		w.reqs = append(w.reqs, streamRequest(t, t.Path))
	}
	return w
}

func streamRequest(t Target, path string) []byte {
	return []byte("GET " + path + " HTTP/1.1\r\nHost: " + t.Host +
		"\r\nAccept: text/event-stream\r\nUser-Agent: globalpresence-loadgen\r\n\r\n")
}

// ramp opens the worker's streams at its share of the ramp rate and returns
// once each is open or has failed (every step has a timeout).
func (w *worker) ramp(ctx context.Context) {
	n := w.cfg.Conns
	w.ready.Add(n)
	w.readers.Add(n)
	start := time.Now()
	for i := range n {
		if w.cfg.RampPerS > 0 {
			at := start.Add(time.Duration(float64(i) / w.cfg.RampPerS * float64(time.Second)))
			// Sleep only when well ahead: sub-millisecond sleeps overshoot.
			if d := time.Until(at); d > time.Millisecond && !sleepCtx(ctx, d) {
				w.ready.Add(i - n)
				w.readers.Add(i - n)
				break
			}
		}
		go w.stream(w.cfg.Offset + i)
	}
	w.ready.Wait()
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// openStream dials t from src (nil: any), sends the GET and reads the
// response header within wait; the returned body is the event stream,
// de-chunked.
func openStream(ctx context.Context, t *Target, req []byte, src net.IP, wait time.Duration) (net.Conn, io.Reader, error) {
	d := net.Dialer{Timeout: openTimeout}
	if src != nil && t.V4 {
		d.LocalAddr = &net.TCPAddr{IP: src}
	}
	c, err := dialLoopback(ctx, &d, t.Addr)
	if err != nil {
		return nil, nil, err
	}
	_ = c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write(req); err != nil {
		c.Close()
		return nil, nil, err
	}
	// A small buffer: the header is short, and the line reader's larger
	// reads bypass it.
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 1024), nil)
	if err != nil {
		c.Close()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = fmt.Errorf("%s: no response header within %s", t.Addr, wait)
		}
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		c.Close()
		return nil, nil, fmt.Errorf("GET %s: %s %s", t.Path, resp.Status, bytes.TrimSpace(b))
	}
	return c, resp.Body, nil
}

type eventKind uint8

const (
	evOther eventKind = iota
	evMessages
	evRegions
)

var linePool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// stream is one measured connection, for its whole life.
func (w *worker) stream(idx int) {
	defer w.readers.Done()
	readied := false
	markReady := func() {
		if !readied {
			readied = true
			w.ready.Done()
		}
	}
	defer markReady()

	t := &w.cfg.Targets[idx%len(w.cfg.Targets)]
	req, room := w.reqs[idx%len(w.reqs)], 0
	if w.cfg.Rooms != nil {
		room = int(w.cfg.Rooms[idx-w.cfg.Offset])
		req = streamRequest(*t, roomPath(t, room, "/events?format=json"))
	}
	c, body, err := openStream(w.ctx, t, req, streamSource(idx), w.cfg.Open)
	if err != nil {
		w.fail(err)
		return
	}
	_ = c.SetDeadline(time.Now().Add(w.cfg.Open)) // for the snapshot
	if !w.track(c) {
		return
	}
	defer w.untrack(c)

	lr := newLineReader(body)
	var (
		kind                    eventKind
		hasData                 bool
		sawRegions, sawMessages bool // the snapshot's
		opened                  bool
		seen                    window
	)
	for {
		var line []byte
		var long *[]byte
		if line, long, err = lr.next(kind == evMessages); err != nil {
			break
		}
		switch {
		case len(line) == 0: // end of an event
			if hasData && kind == evRegions {
				if sawRegions && w.counting.Load() {
					w.regions.Add(1)
				}
				sawRegions = true
			}
			if hasData && kind == evMessages {
				sawMessages = true
			}
			if !opened && sawRegions && sawMessages {
				opened = true
				_ = c.SetDeadline(time.Time{}) // heartbeats are 15 s apart; no read deadline from now on
				w.open.Add(1)
				w.alive.Add(1)
				w.aliveRooms[room].Add(1)
				markReady()
			}
			kind, hasData = evOther, false
		case bytes.HasPrefix(line, []byte("event:")):
			switch string(bytes.TrimSpace(line[len("event:"):])) {
			case "messages":
				kind = evMessages
			case "regions":
				kind = evRegions
			default:
				kind = evOther
			}
		case bytes.HasPrefix(line, []byte("data:")):
			hasData = true
			if kind == evMessages {
				w.scan(line, &seen, time.Now().UnixNano(), room)
			}
		}
		if long != nil {
			linePool.Put(long)
		}
	}
	if opened {
		w.alive.Add(-1)
		w.aliveRooms[room].Add(-1)
	}
	switch {
	case w.stopping.Load():
	case opened:
		w.dropped.Add(1)
	case errors.Is(err, os.ErrDeadlineExceeded):
		w.fail(fmt.Errorf("%s: no snapshot within %s of the header", t.Addr, w.cfg.Open))
	default:
		w.fail(fmt.Errorf("%s: stream ended before its snapshot: %v", t.Addr, err))
	}
}

// prefixed reads rest before r: the bytes a long read took past the end of
// a line, handed back to the line reader.
type prefixed struct {
	rest []byte
	r    io.Reader
}

func (p *prefixed) Read(b []byte) (int, error) {
	if len(p.rest) > 0 {
		n := copy(b, p.rest)
		if p.rest = p.rest[n:]; len(p.rest) == 0 {
			p.rest = nil
		}
		return n, nil
	}
	return p.r.Read(b)
}

// bigPool holds the blocks long lines are read in, 16 times fewer reads than
// through the 4 KiB line buffer; only streams in the middle of a long line
// hold one.
var bigPool = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// lineReader splits a stream into lines through a 4 KiB buffer; longer
// lines are read in big pooled blocks.
type lineReader struct {
	br  *bufio.Reader
	pre *prefixed
}

func newLineReader(body io.Reader) *lineReader {
	pre := &prefixed{r: body}
	return &lineReader{br: bufio.NewReaderSize(pre, 4096), pre: pre}
}

// next returns the next line without its end. A long line is kept whole only
// if keep (then long is a pooled buffer to put back in linePool after use);
// otherwise it is skipped and only its "data:" prefix, if any, is returned.
func (r *lineReader) next(keep bool) (line []byte, long *[]byte, err error) {
	line, err = r.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		line, long, err = readLong(r.pre, line, keep)
	}
	return bytes.TrimRight(line, "\r\n"), long, err
}

// readLong finishes a line longer than the line buffer, which ReadSlice has
// just emptied: the rest is read from pre in big blocks, and what follows
// the line goes back into pre.
func readLong(pre *prefixed, first []byte, keep bool) (line []byte, long *[]byte, err error) {
	isData := bytes.HasPrefix(first, []byte("data:"))
	if keep {
		long = linePool.Get().(*[]byte)
		*long = append((*long)[:0], first...)
	}
	bp := bigPool.Get().(*[]byte)
	defer bigPool.Put(bp)
	for {
		n, err := pre.Read(*bp)
		block := (*bp)[:n]
		i := bytes.IndexByte(block, '\n')
		if i < 0 {
			if keep {
				*long = append(*long, block...)
			}
			if err != nil {
				if long != nil {
					linePool.Put(long)
				}
				return nil, nil, err
			}
			continue
		}
		if keep {
			*long = append(*long, block[:i+1]...)
		}
		pre.rest = append(bytes.Clone(block[i+1:]), pre.rest...)
		switch {
		case keep:
			return *long, long, nil
		case isData:
			return []byte("data:"), nil, nil
		default:
			return []byte("x"), nil, nil // a field we ignore
		}
	}
}

// scan finds this run's texts in a messages data line and records each one
// the stream sees for the first time: `"lg:RUN:SEQ:UNIXNANOS"`, or with
// rooms `"lg:RUN:SEQ:UNIXNANOS@ROOM"`, which counts as a leak in any other
// room's stream. Texts are taken oldest first (a lagging stream's event may
// carry several new ones), so the seen-window never skips one.
func (w *worker) scan(data []byte, seen *window, now int64, room int) {
	type found struct{ seq, sent, room int64 }
	var buf [16]found
	texts := buf[:0]
	for {
		i := bytes.Index(data, w.marker)
		if i < 0 {
			break
		}
		data = data[i+len(w.marker):]
		seq, rest := digits(data)
		if seq < 0 || len(rest) == 0 || rest[0] != ':' {
			continue
		}
		sent, rest := digits(rest[1:])
		to := int64(room)
		if len(rest) > 0 && rest[0] == '@' {
			to, rest = digits(rest[1:])
		}
		if sent < 0 || to < 0 || len(rest) == 0 || rest[0] != '"' || seq >= int64(len(w.got)) {
			continue
		}
		texts = append(texts, found{seq, sent, to})
	}
	slices.SortFunc(texts, func(a, b found) int { return cmp.Compare(a.seq, b.seq) })
	for _, f := range texts {
		switch {
		case !seen.mark(f.seq):
		case f.room != int64(room):
			w.leaked.Add(1)
		default:
			w.got[f.seq].Add(1)
			w.hist.record((now - f.sent) / 1000)
		}
	}
}

// digits parses a decimal number at the start of b (-1 if none).
func digits(b []byte) (int64, []byte) {
	var n int64
	i := 0
	for ; i < len(b) && i < 19 && b[i] >= '0' && b[i] <= '9'; i++ {
		n = n*10 + int64(b[i]-'0')
	}
	if i == 0 {
		return -1, b
	}
	return n, b[i:]
}

// window remembers which of the last 64 event numbers a stream has seen, in
// 16 bytes. A number more than 64 behind the newest can no longer arrive (a
// messages event lists the newest 10), so forgetting it is safe.
type window struct {
	base int64
	bits uint64
}

func (w *window) mark(seq int64) bool {
	if seq < w.base {
		return false
	}
	if d := seq - w.base; d >= 64 {
		shift := d - 63
		if shift >= 64 {
			w.bits = 0
		} else {
			w.bits >>= uint(shift)
		}
		w.base += shift
	}
	bit := uint64(1) << uint(seq-w.base)
	if w.bits&bit != 0 {
		return false
	}
	w.bits |= bit
	return true
}

func (w *worker) track(c net.Conn) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopping.Load() {
		c.Close()
		return false
	}
	w.conns[c] = struct{}{}
	return true
}

func (w *worker) untrack(c net.Conn) {
	w.mu.Lock()
	delete(w.conns, c)
	w.mu.Unlock()
	c.Close()
}

func (w *worker) fail(err error) {
	w.failed.Add(1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.errs) < 3 && !errors.Is(err, context.Canceled) {
		w.errs = append(w.errs, err.Error())
	}
}

// start opens the measuring window: the streams open now are the measured
// ones, and presence events count from here.
func (w *worker) start() {
	w.measured.Store(w.alive.Load())
	for i := range w.aliveRooms {
		w.measuredRooms[i].Store(w.aliveRooms[i].Load())
	}
	w.counting.Store(true)
}

func (w *worker) end() { w.counting.Store(false) }

// stop closes every stream and waits for their readers.
func (w *worker) stop() {
	w.mu.Lock()
	w.stopping.Store(true)
	for c := range w.conns {
		c.Close()
	}
	w.mu.Unlock()
	w.cancel()
	done := make(chan struct{})
	go func() { w.readers.Wait(); close(done) }()
	// Every reader has a timeout or a closed socket, so this is a guard
	// only: a report a little short beats none.
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		w.mu.Lock()
		w.errs = append(w.errs, "some streams had not ended 20 s after stop")
		w.mu.Unlock()
	}
}

func (w *worker) report(typ string) report {
	r := report{Type: typ, Open: w.open.Load(), Failed: w.failed.Load(), Dropped: w.dropped.Load()}
	w.mu.Lock()
	r.Errors = append(r.Errors, w.errs...)
	w.mu.Unlock()
	if typ == "result" {
		r.Measured = w.measured.Load()
		r.Regions = w.regions.Load()
		r.Leaked = w.leaked.Load()
		r.MeasuredRooms = make([]int64, len(w.measuredRooms))
		for i := range w.measuredRooms {
			r.MeasuredRooms[i] = w.measuredRooms[i].Load()
		}
		r.Got = make([]int64, len(w.got))
		for i := range w.got {
			r.Got[i] = w.got[i].Load()
		}
		r.Hist = w.hist.sparse()
		r.MaxUS = w.hist.max.Load()
	}
	return r
}
