// Package hub delivers bus subscribers' events to raw, hijacked connections
// with no goroutine per connection.
//
// A handler validates a request, subscribes, hijacks the connection and hands
// it to Serve with the bytes that must go first (the response head and a
// snapshot). From then on the hub owns it: a small pool of writer goroutines
// (one per CPU) sends each connection's pending events when its subscriber
// notifies, as one non-blocking writev per batch, so a slow client never
// holds a writer. A client that is behind keeps only the unsent rest of one
// batch (slices of the shared, immutable frames: nothing is copied), while
// newer events wait, coalescing, in its subscriber's queue. On Linux one
// goroutine per hub waits in epoll_wait on every connection's socket, to
// notice a closed tab within milliseconds and to resume a client that is
// behind once its socket drains. Elsewhere (and for connections that expose
// no file descriptor) a goroutine per connection reads until EOF and writes
// block with a deadline.
package hub

import (
	"errors"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"globalpresence/bus"
)

// Reasons a connection ends, passed to its onClose. A failed write is passed
// as the error the write returned.
var (
	ErrPeerClosed   = errors.New("hub: the client closed the connection")
	ErrPeerSent     = errors.New("hub: the client sent data on an event stream")
	ErrEvicted      = errors.New("hub: the client fell too far behind (queue overflow)")
	ErrWriteTimeout = errors.New("hub: the client's socket accepted nothing for the write timeout")
	ErrShutdown     = errors.New("hub: shut down")
)

// Config tunes a Hub; zero values take defaults.
type Config struct {
	// WriteTimeout drops a connection that has had unsent bytes for this
	// long (10 s).
	WriteTimeout time.Duration
	// Writers is the number of goroutines writing to sockets
	// (GOMAXPROCS).
	Writers int

	// portable forces the goroutine-per-connection engine (for tests).
	portable bool
}

// Hub owns hijacked connections and streams events to them. Its methods are
// safe for concurrent use.
type Hub struct {
	cfg    Config
	shards []*shard
	next   atomic.Uint32

	mu   sync.Mutex
	all  []*conn // every open connection, for Shutdown; conn.idx is its index
	shut bool

	// behind holds the connections with unsent bytes, and since when.
	bmu    sync.Mutex
	behind map[*conn]time.Time

	stop chan struct{}
	wg   sync.WaitGroup // the hub's own goroutines

	closers closers // runs onClose

	writes atomic.Uint64 // write system calls (batches), for tests

	sys hubSys
}

// A shard is the run queue of one writer goroutine.
type shard struct {
	mu   sync.Mutex
	q    []*conn
	wake chan struct{}
}

// Scheduling states of a connection, guarded by its shard's mu. A connection
// is in a run queue at most once, and handled by one writer at a time.
const (
	idle    uint8 = iota
	queued        // in the shard's queue
	running       // a writer is on it
	rerun         // a writer is on it and it was kicked again meanwhile
)

// conn is one stream; it is all that an idle connection costs the hub, so
// it is kept small.
type conn struct {
	nc      net.Conn // nil once the poller owns the bare descriptor
	sub     *bus.Subscriber
	onClose func(error)
	sh      *shard
	idx     int32 // in h.all; guarded by h.mu
	state   uint8 // guarded by sh.mu

	mu       sync.Mutex
	closed   bool
	blocking bool     // served by the portable engine: writes block
	pend     [][]byte // unsent bytes, only while the client is behind

	sys connSys
}

// writer is one writer goroutine's scratch space, reused for every batch.
type writer struct {
	evs  []bus.Event
	bufs [][]byte
	nb   net.Buffers
	sys  writerSys
}

// New starts a hub: its writers and, on Linux, its epoll goroutine. Call
// Shutdown to stop it.
func New(cfg Config) *Hub {
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.Writers <= 0 {
		cfg.Writers = runtime.GOMAXPROCS(0)
	}
	h := &Hub{cfg: cfg, behind: make(map[*conn]time.Time), stop: make(chan struct{})}
	for range cfg.Writers {
		sh := &shard{wake: make(chan struct{}, 1)}
		h.shards = append(h.shards, sh)
		h.wg.Go(func() { h.write(sh) })
	}
	h.startPoller()
	return h
}

// Serve takes conn over. It writes first (the response head and snapshot),
// then every event of sub as it comes, until the client closes the
// connection, sub is evicted, the socket accepts nothing for the write
// timeout, or the hub shuts down. Then it closes conn and sub and calls
// onClose once, off the hub's own goroutines (at most maxClosers of those
// calls run at once), with the reason. Serve returns
// at once. The hub owns first from then on, but only reads the byte slices
// in it, so they may be shared (bus frames are).
func (h *Hub) Serve(nc net.Conn, first [][]byte, sub *bus.Subscriber, onClose func(error)) {
	c := &conn{nc: nc, sub: sub, onClose: onClose}
	c.sh = h.shards[int(h.next.Add(1))%len(h.shards)]
	c.pend = skipEmpty(first)

	h.mu.Lock()
	if h.shut {
		h.mu.Unlock()
		c.closed = true
		h.finish(c, ErrShutdown)
		return
	}
	c.idx = int32(len(h.all))
	h.all = append(h.all, c)
	h.mu.Unlock()

	c.mu.Lock()
	err := h.watch(c)
	if err == nil && !c.closed && c.pend != nil {
		if !c.blocking {
			// Write first here and now, without blocking: a new
			// client then does not wait behind a fan-out in the
			// writers' queues, and its head is freed at once.
			w := writers.Get().(*writer)
			c.pend, err = h.send(w, c, c.pend)
			writers.Put(w)
		}
		if err == nil && c.pend != nil {
			h.fellBehindLocked(c) // the write timeout covers the snapshot too
		}
	}
	c.mu.Unlock()
	if err != nil {
		h.close(c, err)
		return
	}
	// Events published since sub was made are already queued: SetNotify
	// reports them. The kick writes what is left of first, and them.
	sub.SetNotify(c.kick)
	c.kick()
}

// writers lends scratch space to Serve's first write.
var writers = sync.Pool{New: func() any { return new(writer) }}

// Len returns the number of open connections.
func (h *Hub) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.all)
}

// Shutdown closes every connection (clients reconnect, elsewhere) and
// starts its onClose, then stops the hub's goroutines. Connections served
// later are closed at once. It is idempotent and does not wait for the
// onClose calls to return.
func (h *Hub) Shutdown() {
	h.mu.Lock()
	if h.shut {
		h.mu.Unlock()
		return
	}
	h.shut = true
	all := append([]*conn(nil), h.all...)
	h.mu.Unlock()
	for _, c := range all {
		h.close(c, ErrShutdown)
	}
	close(h.stop)
	h.wakePoller()
	h.wg.Wait()
	h.stopPoller()
}

// kick schedules c on its writer: it has events, its socket drained, or its
// subscriber was evicted. It never blocks, so a publisher can call it.
func (c *conn) kick() {
	sh := c.sh
	sh.mu.Lock()
	switch c.state {
	case idle:
		c.state = queued
		sh.q = append(sh.q, c)
		if len(sh.q) == 1 {
			select {
			case sh.wake <- struct{}{}:
			default:
			}
		}
	case running:
		c.state = rerun
	}
	sh.mu.Unlock()
}

// write is a writer goroutine: it takes its whole run queue at once, so a
// publisher fanning out to thousands keeps appending while it writes.
func (h *Hub) write(sh *shard) {
	var w writer
	var batch []*conn
	for {
		sh.mu.Lock()
		for len(sh.q) == 0 {
			sh.mu.Unlock()
			select {
			case <-sh.wake:
			case <-h.stop:
				return
			}
			sh.mu.Lock()
		}
		batch, sh.q = sh.q, batch[:0]
		for _, c := range batch {
			c.state = running
		}
		sh.mu.Unlock()

		for _, c := range batch {
			h.pump(&w, c)
		}

		sh.mu.Lock()
		for _, c := range batch {
			if c.state == rerun {
				c.state = queued
				sh.q = append(sh.q, c)
			} else {
				c.state = idle
			}
		}
		sh.mu.Unlock()
		clear(batch)
	}
}

// pump sends what c has to send: first the rest of a batch it is behind
// on, then everything its subscriber has queued, in one write. If the
// socket takes only part, the rest stays in c until it is writable again;
// meanwhile new events wait in the subscriber's queue, where they coalesce.
func (h *Hub) pump(w *writer, c *conn) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if c.pend != nil {
		rest, err := h.send(w, c, c.pend)
		if err != nil {
			c.mu.Unlock()
			h.close(c, err)
			return
		}
		if c.pend = rest; rest != nil {
			c.mu.Unlock()
			h.checkEvicted(c) // still behind: only eviction can change now
			return
		}
		h.caughtUpLocked(c)
	}
	w.evs = c.sub.Take(w.evs[:0])
	if len(w.evs) == 0 {
		c.mu.Unlock()
		h.checkEvicted(c)
		return
	}
	for _, ev := range w.evs {
		w.bufs = append(w.bufs, ev.Frame)
	}
	rest, err := h.send(w, c, w.bufs)
	if err == nil && rest != nil {
		c.pend = append([][]byte(nil), rest...) // the frames stay shared
		h.fellBehindLocked(c)
	}
	c.mu.Unlock()
	clear(w.evs)
	clear(w.bufs)
	w.bufs = w.bufs[:0]
	if err != nil {
		h.close(c, err)
	}
}

// send writes bufs to c and returns what the socket did not take (nil when
// it took everything). The portable engine blocks, with a deadline, instead.
func (h *Hub) send(w *writer, c *conn, bufs [][]byte) ([][]byte, error) {
	if c.blocking {
		return nil, h.sendBlocking(w, c, bufs)
	}
	return h.sendNonblocking(w, c, bufs)
}

func (h *Hub) sendBlocking(w *writer, c *conn, bufs [][]byte) error {
	if err := c.nc.SetWriteDeadline(time.Now().Add(h.cfg.WriteTimeout)); err != nil {
		return err
	}
	h.writes.Add(1)
	w.nb = append(w.nb[:0], bufs...) // WriteTo consumes the slice it is given
	_, err := w.nb.WriteTo(c.nc)
	clear(w.nb[:cap(w.nb)])
	return err
}

func (h *Hub) checkEvicted(c *conn) {
	if c.sub.Evicted() {
		h.close(c, ErrEvicted)
	}
}

// fellBehindLocked notes that c has unsent bytes (from now, unless it
// already had). c.mu must be held.
func (h *Hub) fellBehindLocked(c *conn) {
	h.bmu.Lock()
	if _, ok := h.behind[c]; !ok {
		h.behind[c] = time.Now()
	}
	h.bmu.Unlock()
}

func (h *Hub) caughtUpLocked(c *conn) {
	h.bmu.Lock()
	delete(h.behind, c)
	h.bmu.Unlock()
}

// sweep drops the connections that have been behind for the write timeout.
func (h *Hub) sweep(now time.Time) {
	var late []*conn
	h.bmu.Lock()
	for c, since := range h.behind {
		if now.Sub(since) >= h.cfg.WriteTimeout {
			late = append(late, c)
		}
	}
	h.bmu.Unlock()
	for _, c := range late {
		h.close(c, ErrWriteTimeout)
	}
}

// close ends c once: it stops watching the socket before closing it (the
// descriptor may be reused as soon as it is closed), then closes the
// subscriber and hands onClose to the closers, so that a slow onClose (a
// store round trip) never holds a writer or the poller.
func (h *Hub) close(c *conn, why error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.pend = nil
	h.caughtUpLocked(c)
	h.unwatch(c)
	c.mu.Unlock()

	h.mu.Lock()
	if i := int(c.idx); i < len(h.all) && h.all[i] == c {
		last := len(h.all) - 1
		h.all[i] = h.all[last]
		h.all[i].idx = int32(i)
		h.all[last] = nil
		if h.all = h.all[:last]; last == 0 {
			h.all = nil // let the array a crowd grew go with them
		}
	}
	h.mu.Unlock()
	h.finish(c, why)
}

// finish closes c's socket and subscriber and runs onClose.
func (h *Hub) finish(c *conn, why error) {
	if c.nc != nil {
		_ = c.nc.Close()
	}
	c.sub.Close()
	if c.onClose != nil {
		h.closers.run(func() { c.onClose(why) })
	}
}

// skipEmpty drops empty slices from the front of bufs and returns nil when
// nothing is left, so a non-nil result always has a byte to send.
func skipEmpty(bufs [][]byte) [][]byte {
	for len(bufs) > 0 && len(bufs[0]) == 0 {
		bufs[0] = nil
		bufs = bufs[1:]
	}
	if len(bufs) == 0 {
		return nil
	}
	return bufs
}

// advance drops the first n bytes of bufs (which it may modify) and returns
// the rest, or nil.
func advance(bufs [][]byte, n int) [][]byte {
	for n > 0 && len(bufs) > 0 {
		if n < len(bufs[0]) {
			bufs[0] = bufs[0][n:]
			break
		}
		n -= len(bufs[0])
		bufs[0] = nil // let a sent frame go
		bufs = bufs[1:]
	}
	return skipEmpty(bufs)
}

// watchPortable gives c a goroutine that reads until the client closes (or
// sends something, which an event stream client never does), and makes its
// writes block with a deadline. c.mu is held.
func (h *Hub) watchPortable(c *conn) {
	c.blocking = true
	h.wg.Go(func() {
		var buf [512]byte
		_, err := c.nc.Read(buf[:])
		switch {
		case err == nil:
			err = ErrPeerSent
		case errors.Is(err, net.ErrClosed):
			return // the hub closed it
		default:
			err = ErrPeerClosed
		}
		h.close(c, err)
	})
}
