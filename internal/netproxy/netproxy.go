// Package netproxy is a userspace TCP proxy for tests and local clusters
// that can delay traffic, cut links and black-hole them. It stands in for
// netem, which the kernel here does not have.
package netproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

const (
	// readSize is the largest chunk one read takes from a socket.
	readSize = 32 << 10
	// maxQueued bounds the bytes waiting for their send time in one
	// direction; past it the reader stops reading, so TCP flow control
	// pushes back on the sender instead of the proxy buffering without end.
	maxQueued = 4 << 20
	// dialTimeout bounds connecting to the target for one client.
	dialTimeout = 5 * time.Second
)

// Proxy forwards every connection accepted on its listen address to a
// fixed target address.
type Proxy struct {
	ln     net.Listener
	target string
	ctx    context.Context // cancelled by Close to abort dials in flight
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	latency time.Duration
	stalled bool          // black hole: links stay open but carry nothing
	latCh   chan struct{} // closed and replaced on every SetLatency, Stall and Restore
	cut     bool
	gen     uint64 // bumped by Cut, so connections dialling during a Cut are dropped too
	closed  bool
	links   map[*link]struct{}
}

// Start listens on listen (e.g. "127.0.0.1:0") and forwards each accepted
// connection to target.
func Start(listen, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		ln:     ln,
		target: target,
		ctx:    ctx,
		cancel: cancel,
		latCh:  make(chan struct{}),
		links:  make(map[*link]struct{}),
	}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the address the proxy actually listens on.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetLatency sets the one-way delay added to every chunk in both
// directions. It applies at once to data already queued and to new
// connections.
func (p *Proxy) SetLatency(d time.Duration) {
	if d < 0 {
		d = 0
	}
	p.mu.Lock()
	p.latency = d
	p.changedLocked()
	p.mu.Unlock()
}

// changedLocked wakes writers waiting on the old latency or stall state,
// so a shorter delay or a Restore takes effect immediately. Called with
// p.mu held.
func (p *Proxy) changedLocked() {
	close(p.latCh)
	p.latCh = make(chan struct{})
}

// sendState is what a writer needs to decide when a chunk may go.
func (p *Proxy) sendState() (lat time.Duration, stalled bool, changed <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.latency, p.stalled, p.latCh
}

// Stall black-holes the link, as a dead router or a dropped route would:
// every connection, current and new, stays open, but no byte and no close
// (FIN or RST) gets through in either direction until Restore. Peers see
// only silence, so only their own timeouts can notice. Data keeps being
// read into the bounded queues, then TCP flow control holds the senders.
func (p *Proxy) Stall() {
	p.mu.Lock()
	p.stalled = true
	p.changedLocked()
	p.mu.Unlock()
}

// Cut closes every current connection and makes the proxy close new ones
// as soon as they are accepted, until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.cut = true
	p.gen++
	links := p.snapshot()
	p.mu.Unlock()
	for _, l := range links {
		l.close()
	}
}

// Restore lets new connections through again after Cut, and after Stall
// delivers what was held back, in order, as TCP retransmission would once
// a route comes back, closes included.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.stalled = false
	p.changedLocked()
	p.mu.Unlock()
}

// Close stops listening, closes all connections and waits for every
// goroutine of the proxy to end. It is safe to call more than once.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return nil
	}
	p.closed = true
	links := p.snapshot()
	p.mu.Unlock()

	err := p.ln.Close()
	p.cancel()
	for _, l := range links {
		l.close()
	}
	p.wg.Wait()
	return err
}

// snapshot must be called with p.mu held.
func (p *Proxy) snapshot() []*link {
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	return links
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			p.mu.Lock()
			closed := p.closed
			p.mu.Unlock()
			if closed {
				return
			}
			// Transient failures such as EMFILE: back off rather than spin.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.mu.Lock()
		if p.cut || p.closed {
			p.mu.Unlock()
			c.Close()
			continue
		}
		gen := p.gen
		// Added under the lock that Close takes first, so no Add can race
		// with Close's Wait.
		p.wg.Add(1)
		p.mu.Unlock()
		go p.handle(c, gen)
	}
}

func (p *Proxy) handle(client net.Conn, gen uint64) {
	defer p.wg.Done()
	d := net.Dialer{Timeout: dialTimeout}
	upstream, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	l := &link{p: p, client: client, upstream: upstream, done: make(chan struct{})}
	l.open = 2

	p.mu.Lock()
	if p.closed || p.cut || p.gen != gen {
		p.mu.Unlock()
		client.Close()
		upstream.Close()
		return
	}
	p.links[l] = struct{}{}
	p.wg.Add(4)
	p.mu.Unlock()

	up := newPipe(l, client, upstream)
	down := newPipe(l, upstream, client)
	go up.readLoop()
	go up.writeLoop()
	go down.readLoop()
	go down.writeLoop()
}

// link is one proxied connection: the client side and the target side.
type link struct {
	p                *Proxy
	client, upstream net.Conn
	done             chan struct{} // closed when the link is torn down
	once             sync.Once

	mu   sync.Mutex
	open int // directions not yet finished
}

func (l *link) close() {
	l.once.Do(func() {
		close(l.done)
		l.client.Close()
		l.upstream.Close()
		l.p.mu.Lock()
		delete(l.p.links, l)
		l.p.mu.Unlock()
	})
}

// directionDone tears the link down once both directions have delivered
// their EOF, keeping half-closed connections usable until then.
func (l *link) directionDone() {
	l.mu.Lock()
	l.open--
	last := l.open == 0
	l.mu.Unlock()
	if last {
		l.close()
	}
}

type chunk struct {
	data []byte
	at   time.Time // when it was read; sent at at+latency
	eof  bool      // the source half-closed after the chunks before it
	// reset: the source failed rather than half-closed (with eof set);
	// the whole link is torn down when it is due.
	reset bool
}

// pipe carries one direction of a link through a time-ordered queue: the
// reader stamps chunks as they arrive and the writer releases each when
// its delay is over, so a delay shifts traffic in time without limiting
// its rate.
type pipe struct {
	l        *link
	src, dst net.Conn

	mu     sync.Mutex
	q      []chunk
	queued int           // bytes in q
	wake   chan struct{} // the queue became non-empty
	space  chan struct{} // the queue went below maxQueued
}

func newPipe(l *link, src, dst net.Conn) *pipe {
	return &pipe{
		l:     l,
		src:   src,
		dst:   dst,
		wake:  make(chan struct{}, 1),
		space: make(chan struct{}, 1),
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (pp *pipe) readLoop() {
	defer pp.l.p.wg.Done()
	buf := make([]byte, readSize)
	for {
		n, err := pp.src.Read(buf)
		if n > 0 {
			data := make([]byte, n)
			copy(data, buf[:n])
			if !pp.push(chunk{data: data, at: time.Now()}) {
				return
			}
		}
		if err != nil {
			// A reset goes through the queue like a FIN, so a stalled
			// link holds it back too.
			pp.push(chunk{eof: true, reset: !errors.Is(err, io.EOF), at: time.Now()})
			return
		}
	}
}

// push queues c, waiting while the queue is full. It reports false when
// the link was closed meanwhile.
func (pp *pipe) push(c chunk) bool {
	for {
		pp.mu.Lock()
		if pp.queued < maxQueued {
			pp.q = append(pp.q, c)
			pp.queued += len(c.data)
			pp.mu.Unlock()
			signal(pp.wake)
			return true
		}
		pp.mu.Unlock()
		select {
		case <-pp.space:
		case <-pp.l.done:
			return false
		}
	}
}

// pop takes the oldest chunk, waiting for one. It reports false when the
// link was closed.
func (pp *pipe) pop() (chunk, bool) {
	for {
		pp.mu.Lock()
		if len(pp.q) > 0 {
			c := pp.q[0]
			pp.q[0] = chunk{}
			pp.q = pp.q[1:]
			pp.queued -= len(c.data)
			below := pp.queued < maxQueued
			pp.mu.Unlock()
			if below {
				signal(pp.space)
			}
			return c, true
		}
		pp.mu.Unlock()
		select {
		case <-pp.wake:
		case <-pp.l.done:
			return chunk{}, false
		}
	}
}

func (pp *pipe) writeLoop() {
	defer pp.l.p.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		c, ok := pp.pop()
		if !ok {
			return
		}
		if !pp.waitUntilDue(c, timer) {
			return
		}
		if c.reset {
			pp.l.close()
			return
		}
		if c.eof {
			// Pass the half-close on so request/response peers that
			// signal the end by shutting down writes keep working.
			if cw, ok := pp.dst.(interface{ CloseWrite() error }); ok {
				cw.CloseWrite()
			}
			pp.l.directionDone()
			return
		}
		if _, err := pp.dst.Write(c.data); err != nil {
			pp.l.close()
			return
		}
	}
}

// waitUntilDue sleeps until c's send time under the current latency and
// while the proxy is stalled, re-reading both whenever they change. It
// reports false when the link was closed.
func (pp *pipe) waitUntilDue(c chunk, timer *time.Timer) bool {
	for {
		lat, stalled, changed := pp.l.p.sendState()
		if stalled {
			select {
			case <-changed:
				continue
			case <-pp.l.done:
				return false
			}
		}
		d := time.Until(c.at.Add(lat))
		if d <= 0 {
			return true
		}
		timer.Reset(d)
		select {
		case <-timer.C:
		case <-changed:
			timer.Stop()
		case <-pp.l.done:
			return false
		}
	}
}
