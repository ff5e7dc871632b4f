package netproxy

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
)

// echoServer echoes every connection back until the peer closes it. It is
// stopped, with all its goroutines, by t.Cleanup.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.Copy(c, c)
				c.Close()
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func startProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := Start("127.0.0.1:0", target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes msg and reads the same number of bytes back.
func roundTrip(t *testing.T, c net.Conn, msg []byte) []byte {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	return got
}

func TestLargePayloadIntact(t *testing.T) {
	p := startProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	payload := make([]byte, 1<<20)
	rand.Read(payload)

	c.SetDeadline(time.Now().Add(10 * time.Second))
	// Write concurrently with reading: the echo would otherwise stall once
	// the socket buffers fill.
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		werr <- err
	}()
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("payload changed in transit")
	}
}

func TestLatency(t *testing.T) {
	p := startProxy(t, echoServer(t))
	p.SetLatency(50 * time.Millisecond)
	c := dial(t, p.Addr())

	start := time.Now()
	if got := roundTrip(t, c, []byte("x")); string(got) != "x" {
		t.Fatalf("got %q", got)
	}
	rtt := time.Since(start)
	if rtt < 100*time.Millisecond {
		t.Fatalf("round trip took %v, want >= 100ms with 50ms each way", rtt)
	}

	// Pipelined writes must all be in flight together, not one per delay.
	const n = 20
	start = time.Now()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var want []byte
	for i := range n {
		msg := []byte{byte('a' + i)}
		want = append(want, msg...)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond) // keep them separate chunks
	}
	got := make([]byte, n)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	if !bytes.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if elapsed < 100*time.Millisecond || elapsed > time.Second {
		t.Fatalf("%d pipelined writes took %v, want between 100ms and 1s", n, elapsed)
	}
	t.Logf("round trip %v; %d pipelined writes %v", rtt, n, elapsed)

	// Lowering the latency applies to the open connection too.
	p.SetLatency(0)
	start = time.Now()
	roundTrip(t, c, []byte("y"))
	if rtt := time.Since(start); rtt > 50*time.Millisecond {
		t.Logf("round trip after SetLatency(0) took %v (noisy machine?)", rtt)
	}
}

// expectClosed fails unless c is closed by the far side within a second.
func expectClosed(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(time.Second))
	_, err := c.Read(make([]byte, 1))
	if err == nil {
		t.Fatalf("%s: read succeeded, want EOF or error", what)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("%s: still open after 1s", what)
	}
}

func TestCutAndRestore(t *testing.T) {
	p := startProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	roundTrip(t, c, []byte("before"))

	p.Cut()
	expectClosed(t, c, "existing connection after Cut")
	expectClosed(t, dial(t, p.Addr()), "new connection during Cut")

	p.Restore()
	c2 := dial(t, p.Addr())
	if got := roundTrip(t, c2, []byte("after")); string(got) != "after" {
		t.Fatalf("got %q after Restore", got)
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	echo := echoServer(t)
	base := runtime.NumGoroutine()

	p, err := Start("127.0.0.1:0", echo)
	if err != nil {
		t.Fatal(err)
	}
	p.SetLatency(200 * time.Millisecond)
	var clients []net.Conn
	for range 5 {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		// Leave data queued behind the delay when Close comes.
		c.Write([]byte("pending"))
	}
	t.Cleanup(func() {
		for _, c := range clients {
			c.Close()
		}
	})
	time.Sleep(50 * time.Millisecond)

	done := make(chan error, 1)
	go func() { done <- p.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	for _, c := range clients {
		expectClosed(t, c, "client after Close")
	}

	// The echo server's per-connection goroutines end too, because Close
	// closed the upstream connections.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, want <= %d:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestCloseWithStalledPeer fills the queue against a target that never
// reads, so the reader is blocked on backpressure and the writer on a
// full socket; Close must still return promptly.
func TestCloseWithStalledPeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	t.Cleanup(func() {
		ln.Close()
		for c := range accepted {
			c.Close()
		}
	})

	p, err := Start("127.0.0.1:0", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	c := dial(t, p.Addr())

	written := make(chan int64, 1)
	go func() {
		var n int64
		buf := make([]byte, 64<<10)
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		for {
			w, err := c.Write(buf)
			n += int64(w)
			if err != nil {
				written <- n
				return
			}
		}
	}()
	time.Sleep(500 * time.Millisecond)

	start := time.Now()
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Close took %v", d)
	}
	c.Close()
	n := <-written
	// Socket buffers hold some megabytes; far more than maxQueued plus
	// them would mean the queue is not bounded.
	if n > 64<<20 {
		t.Fatalf("proxy accepted %d bytes from a client whose peer never reads", n)
	}
	t.Logf("accepted %d bytes before backpressure", n)
}
