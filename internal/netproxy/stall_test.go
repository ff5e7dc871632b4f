package netproxy

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// expectSilent fails unless c yields nothing at all, neither data nor a
// close, for d.
func expectSilent(t *testing.T, c net.Conn, d time.Duration, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	n, err := c.Read(make([]byte, 64))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s: read %d bytes, err %v; want silence", what, n, err)
	}
}

func readN(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, n)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(buf)
}

func TestStallHoldsBytesThenRestoreDelivers(t *testing.T) {
	p := startProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	roundTrip(t, c, []byte("before"))

	p.Stall()
	if _, err := c.Write([]byte("during")); err != nil {
		t.Fatal(err)
	}
	expectSilent(t, c, 300*time.Millisecond, "existing connection during Stall")
	// A new connection is accepted (a black hole gives no RST either) but
	// carries nothing.
	c2 := dial(t, p.Addr())
	if _, err := c2.Write([]byte("new")); err != nil {
		t.Fatal(err)
	}
	expectSilent(t, c2, 300*time.Millisecond, "new connection during Stall")

	p.Restore()
	if got := readN(t, c, 6); got != "during" {
		t.Fatalf("after Restore got %q, want the held bytes", got)
	}
	if got := readN(t, c2, 3); got != "new" {
		t.Fatalf("new connection after Restore got %q", got)
	}
	if got := roundTrip(t, c, []byte("after")); string(got) != "after" {
		t.Fatalf("got %q after Restore", got)
	}
}

// TestStallHoldsCloses: a peer that gives up during a stall is not seen
// closing by the other side until Restore; that silence is what makes a
// black hole different from Cut.
func TestStallHoldsCloses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	p := startProxy(t, ln.Addr().String())
	c := dial(t, p.Addr())
	var server net.Conn
	select {
	case server = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("proxy did not connect upstream")
	}

	p.Stall()
	server.Close()
	expectSilent(t, c, 300*time.Millisecond, "client whose server closed during Stall")

	p.Restore()
	expectClosed(t, c, "client after Restore")
}

func TestCutWhileStalledCloses(t *testing.T) {
	p := startProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	roundTrip(t, c, []byte("x"))
	p.Stall()
	p.Cut()
	expectClosed(t, c, "stalled connection after Cut")
	p.Restore()
	if got := roundTrip(t, dial(t, p.Addr()), []byte("ok")); string(got) != "ok" {
		t.Fatalf("got %q after Restore", got)
	}
}
