package hub

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"globalpresence/bus"
)

// fixture is a hub, an emitter and a loopback listener, with a record of
// every onClose call.
type fixture struct {
	t  *testing.T
	h  *Hub
	em *bus.Emitter
	ln net.Listener

	mu     sync.Mutex
	closes map[int][]error
	ended  chan int
}

func newFixture(t *testing.T, cfg Config, queueLen int) *fixture {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, h: New(cfg), em: bus.NewEmitter(queueLen), ln: ln,
		closes: make(map[int][]error), ended: make(chan int, 100000)}
	t.Cleanup(func() {
		f.h.Shutdown()
		ln.Close()
	})
	return f
}

// engines runs a test with the platform's engine and with the portable one.
func engines(t *testing.T, test func(t *testing.T, cfg Config)) {
	t.Run("default", func(t *testing.T) { test(t, Config{}) })
	t.Run("portable", func(t *testing.T) { test(t, Config{portable: true}) })
}

// dial opens a client connection and returns it with the server's end.
func (f *fixture) dial() (client, server net.Conn) {
	f.t.Helper()
	client, err := net.Dial("tcp", f.ln.Addr().String())
	if err != nil {
		f.t.Fatal(err)
	}
	server, err = f.ln.Accept()
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { client.Close() })
	return client, server
}

// serve hands server to the hub as stream id, subscribed to topics.
func (f *fixture) serve(id int, server net.Conn, first [][]byte, sub *bus.Subscriber) {
	f.h.Serve(server, first, sub, func(why error) {
		f.mu.Lock()
		f.closes[id] = append(f.closes[id], why)
		f.mu.Unlock()
		f.ended <- id
	})
}

// open is dial and serve.
func (f *fixture) open(id int, first string, topics ...string) net.Conn {
	f.t.Helper()
	client, server := f.dial()
	f.serve(id, server, [][]byte{[]byte(first)}, f.em.Subscribe(topics...))
	return client
}

// waitClosed waits for stream id's onClose and returns its reason.
func (f *fixture) waitClosed(id int, within time.Duration) error {
	f.t.Helper()
	deadline := time.Now().Add(within)
	for {
		f.mu.Lock()
		whys := f.closes[id]
		f.mu.Unlock()
		if len(whys) > 0 {
			return whys[0]
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	f.t.Fatalf("stream %d: onClose not called within %v", id, within)
	return nil
}

func (f *fixture) closeCount(id int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.closes[id])
}

// readUntil reads from c until what it has read contains want.
func readUntil(c net.Conn, got *bytes.Buffer, want string, within time.Duration) error {
	_ = c.SetReadDeadline(time.Now().Add(within))
	buf := make([]byte, 64<<10)
	for !bytes.Contains(got.Bytes(), []byte(want)) {
		n, err := c.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			return fmt.Errorf("reading until %q: %w (got %d bytes)", want, err, got.Len())
		}
	}
	return nil
}

func frame(s string) bus.Event { return bus.Event{Frame: bus.Frame("", []byte(s))} }

func TestEventsInOrder(t *testing.T) {
	engines(t, func(t *testing.T, cfg Config) {
		const total = 500
		f := newFixture(t, cfg, total+1)
		client, server := f.dial()
		sub := f.em.Subscribe("t")
		f.em.Publish("t", frame("early")) // between subscribing and Serve
		f.serve(1, server, [][]byte{[]byte("HEAD\r\n\r\n"), nil, []byte("retry: 1\n\n")}, sub)
		var want bytes.Buffer
		want.WriteString("HEAD\r\n\r\nretry: 1\n\n")
		want.Write(bus.Frame("", []byte("early")))
		for i := range total {
			ev := frame(strconv.Itoa(i))
			want.Write(ev.Frame)
			f.em.Publish("t", ev)
		}
		var got bytes.Buffer
		if err := readUntil(client, &got, fmt.Sprintf("data: %d\n\n", total-1), 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Fatalf("stream differs from what was published:\n got %q...\nwant %q...", got.String()[:min(got.Len(), 200)], want.String()[:200])
		}
	})
}

// Events that are pending together go out in one write.
func TestBatchIsOneWrite(t *testing.T) {
	engines(t, func(t *testing.T, cfg Config) {
		f := newFixture(t, cfg, 0)
		client, server := f.dial()
		sub := f.em.Subscribe("t")
		for i := range 10 {
			f.em.Publish("t", frame(strconv.Itoa(i)))
		}
		f.serve(1, server, nil, sub)
		var got bytes.Buffer
		if err := readUntil(client, &got, "data: 9\n\n", 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if n := f.h.writes.Load(); n != 1 {
			t.Fatalf("10 pending events took %d writes, want 1", n)
		}
	})
}

// A closed tab is noticed within a second (within milliseconds, in fact),
// whether the client closes cleanly or resets.
func TestPeerCloseNoticed(t *testing.T) {
	engines(t, func(t *testing.T, cfg Config) {
		for _, rst := range []bool{false, true} {
			f := newFixture(t, cfg, 0)
			client := f.open(1, "hello\n", "t")
			var got bytes.Buffer
			if err := readUntil(client, &got, "hello\n", 5*time.Second); err != nil {
				t.Fatal(err)
			}
			if rst {
				_ = client.(*net.TCPConn).SetLinger(0)
			}
			start := time.Now()
			client.Close()
			why := f.waitClosed(1, 5*time.Second)
			took := time.Since(start)
			t.Logf("reset=%v: noticed in %v (%v)", rst, took, why)
			if took > time.Second {
				t.Errorf("reset=%v: closed tab noticed after %v", rst, took)
			}
			if !errors.Is(why, ErrPeerClosed) {
				t.Errorf("reset=%v: onClose(%v), want ErrPeerClosed", rst, why)
			}
			if n := f.em.Subscribers("t"); n != 0 {
				t.Errorf("subscriber not closed: %d left", n)
			}
			if n := f.h.Len(); n != 0 {
				t.Errorf("hub still holds %d connections", n)
			}
		}
	})
}

// stuckPair opens a stream whose client never reads, with the smallest
// socket buffers, so the server's writes soon stop being accepted.
func (f *fixture) stuckPair(id int, topics ...string) net.Conn {
	f.t.Helper()
	client, server := f.dial()
	_ = client.(*net.TCPConn).SetReadBuffer(1024)
	_ = server.(*net.TCPConn).SetWriteBuffer(1024)
	f.serve(id, server, nil, f.em.Subscribe(topics...))
	return client
}

// A client that never reads falls behind, keeps only the rest of one
// batch, and is dropped after the write timeout; meanwhile every other
// client gets every event promptly: no writer ever waits for it.
func TestStuckClientDropped(t *testing.T) {
	const timeout = 300 * time.Millisecond
	f := newFixture(t, Config{WriteTimeout: timeout, Writers: 1}, 100000)
	const readers = 8
	stuck := f.stuckPair(0, "t")
	defer stuck.Close()

	type result struct {
		n     int
		worst time.Duration
		err   error
	}
	results := make(chan result, readers)
	stop := make(chan struct{})
	for id := 1; id <= readers; id++ {
		client := f.open(id, "", "t")
		go func() {
			var r result
			defer func() { results <- r }()
			var pending []byte
			buf := make([]byte, 64<<10)
			for {
				_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, err := client.Read(buf)
				pending = append(pending, buf[:n]...)
				for {
					i := bytes.Index(pending, []byte("\n\n"))
					if i < 0 {
						break
					}
					fields := strings.Fields(string(pending[len("data: "):i]))
					pending = pending[i+2:]
					if fields[0] == "end" {
						return
					}
					seq, _ := strconv.Atoi(fields[0])
					sent, _ := strconv.ParseInt(fields[1], 10, 64)
					if seq != r.n {
						r.err = fmt.Errorf("got event %d, want %d", seq, r.n)
						return
					}
					r.n++
					r.worst = max(r.worst, time.Since(time.Unix(0, sent)))
				}
				if err != nil {
					r.err = err
					return
				}
			}
		}()
	}

	pad := strings.Repeat("x", 2000)
	sawBehind := false
	var dropped error
	start := time.Now()
	seq := 0
	for ; time.Since(start) < timeout+time.Second; seq++ {
		f.em.Publish("t", frame(fmt.Sprintf("%d %d %s", seq, time.Now().UnixNano(), pad)))
		f.h.bmu.Lock()
		sawBehind = sawBehind || len(f.h.behind) > 0
		f.h.bmu.Unlock()
		if dropped == nil && f.closeCount(0) > 0 {
			dropped = f.waitClosed(0, 0)
			t.Logf("the stuck client was dropped %v after the first event (%v)", time.Since(start), dropped)
		}
		time.Sleep(2 * time.Millisecond)
	}
	f.em.Publish("t", frame("end"))
	close(stop)
	for range readers {
		r := <-results
		if r.err != nil || r.n != seq {
			t.Fatalf("a reader got %d of %d events: %v", r.n, seq, r.err)
		}
		if r.worst > 500*time.Millisecond {
			t.Errorf("a reader got an event %v after it was published", r.worst)
		} else {
			t.Logf("a reader got all %d events, the slowest after %v", r.n, r.worst)
		}
	}
	if !sawBehind {
		t.Error("the stuck client never fell behind")
	}
	if !errors.Is(dropped, ErrWriteTimeout) {
		t.Fatalf("stuck client: onClose(%v), want ErrWriteTimeout within %v", dropped, timeout+time.Second)
	}
	if f.h.Len() != readers {
		t.Errorf("hub holds %d connections, want %d", f.h.Len(), readers)
	}
}

// The portable engine drops a stuck client when a write times out.
func TestStuckClientDroppedPortable(t *testing.T) {
	f := newFixture(t, Config{WriteTimeout: 200 * time.Millisecond, portable: true}, 100000)
	stuck := f.stuckPair(0, "t")
	defer stuck.Close()
	publishUntilDropped(t, f, strings.Repeat("x", 2000))
	if why := f.waitClosed(0, 0); !errors.Is(why, os.ErrDeadlineExceeded) {
		t.Fatalf("onClose(%v), want a deadline error", why)
	}
}

// publishUntilDropped publishes pad on topic "t" every millisecond until the
// first connection is closed (failing after 5 s worth of events).
func publishUntilDropped(t *testing.T, f *fixture, pad string) {
	t.Helper()
	for i := 0; f.closeCount(0) == 0; i++ {
		if i > 5000 {
			t.Fatal("stuck client not dropped")
		}
		f.em.Publish("t", frame(pad))
		time.Sleep(time.Millisecond)
	}
}

// A client too slow for its queue is evicted by the bus, and dropped at
// once. (The portable engine's writer is stuck in the write meanwhile: it
// drops the client at the write timeout.)
func TestEvictedSubscriberDropped(t *testing.T) {
	f := newFixture(t, Config{WriteTimeout: time.Minute}, 8)
	stuck := f.stuckPair(0, "t")
	defer stuck.Close()
	publishUntilDropped(t, f, strings.Repeat("x", 4000))
	if why := f.waitClosed(0, 0); !errors.Is(why, ErrEvicted) {
		t.Fatalf("onClose(%v), want ErrEvicted", why)
	}
}

// Shutdown closes every connection, even with clients closing at the same
// time, calls every onClose exactly once, and leaves no goroutine behind.
func TestShutdown(t *testing.T) {
	engines(t, func(t *testing.T, cfg Config) {
		runtime.GC()
		base := runtime.NumGoroutine()
		f := newFixture(t, cfg, 0)
		const n = 200
		clients := make([]net.Conn, n)
		for i := range clients {
			if i%10 == 0 {
				clients[i] = f.stuckPair(i, "t")
			} else {
				clients[i] = f.open(i, "hi\n", "t")
			}
		}
		f.em.Publish("t", frame(strings.Repeat("y", 20000))) // fills the stuck ones
		var wg sync.WaitGroup
		for i := 1; i < n; i += 10 {
			wg.Go(func() { clients[i].Close() })
		}
		f.h.Shutdown()
		wg.Wait()
		f.h.Shutdown() // idempotent

		for i := range clients {
			if i%10 <= 1 {
				// Closed by the client, or stuck: its tiny window makes
				// reading the rest take seconds.
				continue
			}
			_ = clients[i].SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.Copy(io.Discard, clients[i]); err != nil {
				t.Fatalf("client %d: %v, want EOF", i, err)
			}
		}
		for i := range n {
			why := f.waitClosed(i, 5*time.Second)
			if i%10 != 1 && !errors.Is(why, ErrShutdown) {
				t.Errorf("client %d: onClose(%v), want ErrShutdown", i, why)
			}
		}

		// After Shutdown a new connection is closed at once.
		client, server := f.dial()
		f.serve(n, server, [][]byte{[]byte("late")}, f.em.Subscribe("t"))
		if why := f.waitClosed(n, time.Second); !errors.Is(why, ErrShutdown) {
			t.Fatalf("late stream: onClose(%v)", why)
		}
		_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
		if b, err := io.ReadAll(client); err != nil || len(b) > 0 {
			t.Fatalf("late stream read %q, %v; want EOF", b, err)
		}

		time.Sleep(50 * time.Millisecond) // let extra onClose calls show
		for i := range n + 1 {
			if c := f.closeCount(i); c != 1 {
				t.Errorf("client %d: onClose called %d times", i, c)
			}
		}
		if s := f.em.Subscribers("t"); s != 0 {
			t.Errorf("%d subscribers left", s)
		}
		f.ln.Close()
		waitGoroutines(t, base)
	})
}

func waitGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		t.Errorf("%d goroutines, %d before the hub", n, base)
	}
}

// Connections opened and closed as fast as possible, while events flow:
// descriptors are reused at once, and an event for a closed connection
// must never touch the new one on the same descriptor.
func TestDescriptorReuse(t *testing.T) {
	engines(t, func(t *testing.T, cfg Config) {
		f := newFixture(t, cfg, 100000)
		const sentinels, churners, rounds = 10, 4, 150
		keep := make([]net.Conn, sentinels)
		for i := range keep {
			keep[i] = f.open(-1-i, "", "all")
		}
		for _, c := range keep {
			go func() { _, _ = io.Copy(io.Discard, c) }()
		}

		stop := make(chan struct{})
		var pub sync.WaitGroup
		pub.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				f.em.Publish("all", frame(strconv.Itoa(i)))
				time.Sleep(50 * time.Microsecond)
			}
		})

		var wg sync.WaitGroup
		var opened atomic.Int32
		var mu sync.Mutex // dial and accept pair up in order
		for w := range churners {
			wg.Go(func() {
				for r := range rounds {
					id := w*rounds + r
					hello := fmt.Sprintf("hello %d\n", id)
					mu.Lock()
					client, server := f.dial()
					mu.Unlock()
					f.serve(id, server, [][]byte{[]byte(hello)}, f.em.Subscribe("all", "own"+strconv.Itoa(id)))
					opened.Add(1)
					f.em.Publish("own"+strconv.Itoa(id), frame(hello))
					var got bytes.Buffer
					if err := readUntil(client, &got, "data: "+hello, 5*time.Second); err != nil {
						t.Errorf("stream %d: %v", id, err)
						return
					}
					if !bytes.HasPrefix(got.Bytes(), []byte(hello)) {
						t.Errorf("stream %d starts with %q", id, got.Bytes()[:min(got.Len(), 20)])
					}
					if rand.IntN(2) == 0 {
						_ = client.(*net.TCPConn).SetLinger(0)
					}
					client.Close()
				}
			})
		}
		wg.Wait()
		close(stop)
		pub.Wait()

		for id := range int(opened.Load()) {
			f.waitClosed(id, 5*time.Second)
		}
		time.Sleep(50 * time.Millisecond)
		for id := range int(opened.Load()) {
			if c := f.closeCount(id); c != 1 {
				t.Errorf("stream %d: onClose called %d times", id, c)
			}
		}
		for i := range keep {
			if c := f.closeCount(-1 - i); c != 0 {
				t.Fatalf("a connection that stayed open was closed: %v", f.waitClosed(-1-i, 0))
			}
		}
		if n := f.h.Len(); n != sentinels {
			t.Fatalf("hub holds %d connections, want the %d that stayed open", n, sentinels)
		}
	})
}

// The hub runs no goroutine per connection: a thousand open streams cost
// no more goroutines than none, and all of them get an event.
func TestNoGoroutinePerConnection(t *testing.T) {
	f := newFixture(t, Config{}, 0)
	if !f.h.polling() {
		t.Skip("no poller here")
	}
	runtime.GC()
	base := runtime.NumGoroutine()
	const n = 1000
	clients := make([]net.Conn, n)
	for i := range clients {
		clients[i] = f.open(i, "hi\n", "t")
	}
	f.em.Publish("t", frame("to all"))
	for i, c := range clients {
		var got bytes.Buffer
		if err := readUntil(c, &got, "hi\ndata: to all\n\n", 5*time.Second); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
	}
	if got := runtime.NumGoroutine(); got > base+2 {
		t.Fatalf("%d goroutines with %d streams open, %d with none", got, n, base)
	} else {
		t.Logf("%d goroutines with %d streams open, %d with none", got, n, base)
	}
	for _, c := range clients {
		c.Close()
	}
	for i := range clients {
		f.waitClosed(i, 5*time.Second)
	}
}

// A connection without a descriptor (net.Pipe here, TLS in life) is served
// by the portable engine whatever the platform.
func TestConnWithoutDescriptor(t *testing.T) {
	f := newFixture(t, Config{}, 0)
	client, server := net.Pipe()
	f.serve(1, server, [][]byte{[]byte("hi\n")}, f.em.Subscribe("t"))
	f.em.Publish("t", frame("x"))
	var got bytes.Buffer
	if err := readUntil(client, &got, "data: x\n\n", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if got.String() != "hi\ndata: x\n\n" {
		t.Fatalf("got %q", got.String())
	}
	client.Close()
	if why := f.waitClosed(1, time.Second); !errors.Is(why, ErrPeerClosed) {
		t.Fatalf("onClose(%v)", why)
	}
}

func TestAdvance(t *testing.T) {
	b := func(s ...string) [][]byte {
		out := make([][]byte, len(s))
		for i := range s {
			out[i] = []byte(s[i])
		}
		return out
	}
	str := func(bufs [][]byte) string { return string(bytes.Join(bufs, []byte("|"))) }
	for _, tt := range []struct {
		in   [][]byte
		n    int
		want string
		nil  bool
	}{
		{b("abc", "de"), 0, "abc|de", false},
		{b("abc", "de"), 2, "c|de", false},
		{b("abc", "de"), 3, "de", false},
		{b("abc", "", "de"), 3, "de", false},
		{b("abc", "de"), 5, "", true},
		{b("", ""), 0, "", true},
	} {
		got := advance(tt.in, tt.n)
		if str(got) != tt.want || (got == nil) != tt.nil {
			t.Errorf("advance(_, %d) = %q (nil %v), want %q", tt.n, str(got), got == nil, tt.want)
		}
	}
}

// When every stream ends at once, every onClose runs, but never more than
// maxClosers at a time: a goroutine each, all waiting on the store, would
// leave the runtime a descriptor per goroutine for good.
func TestMassCloseBoundsOnClose(t *testing.T) {
	engines(t, func(t *testing.T, cfg Config) {
		f := newFixture(t, cfg, 0)
		const n = 300
		var running, peak, calls atomic.Int64
		release := make(chan struct{})
		var ended sync.WaitGroup
		ended.Add(n)
		for range n {
			_, server := f.dial()
			f.h.Serve(server, nil, f.em.Subscribe("t"), func(error) {
				calls.Add(1)
				now := running.Add(1)
				for p := peak.Load(); now > p && !peak.CompareAndSwap(p, now); p = peak.Load() {
				}
				<-release // a store that takes its time
				running.Add(-1)
				ended.Done()
			})
		}
		f.h.Shutdown()
		deadline := time.Now().Add(5 * time.Second)
		for calls.Load() < maxClosers && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond) // let any beyond the bound start
		if p := peak.Load(); p != maxClosers {
			t.Errorf("%d onClose calls ran at once with %d streams closing, want %d", p, n, maxClosers)
		}
		close(release)
		ended.Wait() // every one of them runs
		if c := calls.Load(); c != n {
			t.Errorf("%d onClose calls for %d streams", c, n)
		}
	})
}
