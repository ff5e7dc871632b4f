package handlers

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"globalpresence/presence"
	"globalpresence/templates"
)

// newTestServer is the whole handler stack on the memory store, served
// without a network: requests go straight to ServeHTTP.
func newTestServer(t *testing.T, limits Limits) *Server {
	t.Helper()
	store := presence.NewMemory("ams")
	tmpl, err := templates.Parse()
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{
		Store: store, Broadcaster: newTestBroadcaster(t, store), Templates: tmpl, Region: "ams",
		Limits: limits, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	t.Cleanup(s.EndStreams)
	return s
}

// serve answers one request from addr (host:port) and returns its status.
func serve(s *Server, method, target, addr string, header http.Header, body string) int {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	req.RemoteAddr = addr
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return rec.Code
}

func TestClientKey(t *testing.T) {
	for ip, want := range map[string]string{
		"192.0.2.7":                 "192.0.2.7",
		"::ffff:192.0.2.7":          "192.0.2.7",
		"2001:db8:1:2::1":           "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff:1:2:3":   "2001:db8:1:2::/64",
		"fe80::1%eth0":              "fe80::/64",
		"not an address":            "not an address",
		"2001:db8:1:3:aaaa::bbbb:1": "2001:db8:1:3::/64",
	} {
		if got := clientKey(ip); got != want {
			t.Errorf("clientKey(%q) = %q, want %q", ip, got, want)
		}
	}
}

// Rotating through the addresses of one IPv6 /64 earns no more posts than
// one address does; another /64, or another IPv4 address, is another client.
func TestPostLimitKeysIPv6By64(t *testing.T) {
	s := newTestServer(t, Limits{HiPerSec: 0.001, HiBurst: 3})
	created := 0
	for i := range 30 {
		addr := fmt.Sprintf("[2001:db8:1:2:%x::1]:4000", i)
		if code := serve(s, http.MethodPost, "/hi", addr, nil, ""); code == http.StatusCreated {
			created++
		} else if code != http.StatusTooManyRequests {
			t.Fatalf("post from %s: %d", addr, code)
		}
	}
	if created != 3 {
		t.Fatalf("30 posts from one /64 with a burst of 3: %d created", created)
	}
	for _, addr := range []string{"[2001:db8:1:3::1]:4000", "192.0.2.1:4000", "192.0.2.2:4000"} {
		if code := serve(s, http.MethodPost, "/hi", addr, nil, ""); code != http.StatusCreated {
			t.Fatalf("first post from %s: %d", addr, code)
		}
	}
}

// A flood of refused posts, with no cookie or a new random one each, leaves
// nothing behind: the heap after it is within 10 MiB of the heap before.
func TestRefusedFloodKeepsNoState(t *testing.T) {
	s := newTestServer(t, Limits{HiPerSec: 0.001, HiBurst: 3})
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	const addr = "192.0.2.1:4000"
	for range 10 { // spends the address's burst
		serve(s, http.MethodPost, "/hi", addr, nil, "")
	}
	idle := heap()
	const n = 100_000
	for i := range n {
		var h http.Header
		if i%4 != 0 { // a well-formed secret the client made up
			h = http.Header{"Cookie": {cookieName + "=" + presence.NewSecret()}}
		}
		if code := serve(s, http.MethodPost, "/hi", addr, h, ""); code != http.StatusTooManyRequests {
			t.Fatalf("post %d: %d, want 429", i, code)
		}
	}
	grown := int64(heap()) - int64(idle)
	t.Logf("heap: %.1f MiB idle, %+.2f MiB after %d refused posts", float64(idle)/(1<<20), float64(grown)/(1<<20), n)
	if grown > 10<<20 {
		t.Fatalf("the heap grew by %.1f MiB over %d refused posts", float64(grown)/(1<<20), n)
	}
}

// Fields come from the body only: a query string neither sets the light
// nor counts as an unknown field. Escapes that are whole stay accepted.
func TestFieldsComeFromTheBodyOnly(t *testing.T) {
	s := newTestServer(t, Limits{HiPerSec: 1000, HiBurst: 1000})
	form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	json := http.Header{"Content-Type": {"application/json"}}
	light := func() bool {
		snap, err := s.cfg.Store.Snapshot(t.Context(), DefaultRoom, presence.PartLight)
		if err != nil {
			t.Fatal(err)
		}
		return snap.Light.On
	}
	for _, tc := range []struct {
		target string
		header http.Header
		body   string
		want   int
		on     bool
	}{
		{"/lightbulb?state=off", nil, "", http.StatusOK, true}, // a toggle
		{"/lightbulb?state=on", form, "state=off", http.StatusOK, false},
		{"/rooms/home/lightbulb?state=off", json, "{}", http.StatusOK, true},
		{"/hi?utm_source=x", nil, "", http.StatusCreated, true},
		{"/hi?text=" + strings.Repeat("x", 500), form, "text=ok", http.StatusCreated, true},
		{"/hi?%zz", nil, "", http.StatusCreated, true},
		{"/hi", json, `{"text":"\ud83d\udc4b \\ud800 \u00e9"}`, http.StatusCreated, true},
	} {
		if code := serve(s, http.MethodPost, tc.target, "192.0.2.1:4000", tc.header, tc.body); code != tc.want {
			t.Fatalf("POST %s %q: %d, want %d", tc.target, tc.body, code, tc.want)
		}
		if light() != tc.on {
			t.Fatalf("after POST %s %q the light is on=%v, want %v", tc.target, tc.body, !tc.on, tc.on)
		}
	}
}

// fakeConn is a connection from addr that notes whether it was closed.
type fakeConn struct {
	net.Conn
	addr   net.Addr
	closed bool
}

func (c *fakeConn) RemoteAddr() net.Addr { return c.addr }
func (c *fakeConn) Close() error         { c.closed = true; return nil }

// Connections count per address, an IPv6 /64 being one; one that leaves
// (closed, or hijacked into a stream) makes room for another.
func TestConnCapKeysIPv6By64(t *testing.T) {
	cc := newConnCap(20)
	conn := func(ip string) *fakeConn {
		c := &fakeConn{addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 4000}}
		cc.track(c, http.StateNew)
		return c
	}
	var open []*fakeConn
	for i := range 30 {
		if c := conn(fmt.Sprintf("2001:db8:1:2:%x::1", i)); !c.closed {
			open = append(open, c)
		}
	}
	if len(open) != 20 {
		t.Fatalf("30 connections from one /64 with a cap of 20: %d kept", len(open))
	}
	for _, ip := range []string{"2001:db8:1:3::1", "192.0.2.1"} {
		if conn(ip).closed {
			t.Fatalf("a connection from %s was closed", ip)
		}
	}
	cc.track(open[0], http.StateHijacked)
	cc.track(open[1], http.StateClosed)
	for range 2 {
		if conn("2001:db8:1:2::9").closed {
			t.Fatal("no room made by a closed and a hijacked connection")
		}
	}
	if !conn("2001:db8:1:2::9").closed || cc.open() != 22 {
		t.Fatalf("%d connections counted, want 22 with the cap kept", cc.open())
	}
}
