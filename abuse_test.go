package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func do(t testing.TB, method, u string, header map[string]string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, u, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		_, _ = io.Copy(io.Discard, resp.Body) // a stream would never end
	}
	resp.Body.Close()
	return resp
}

// Another site cannot make a visitor's browser flip the light or post;
// the page itself (same origin) and curl (no browser headers) can.
func TestCrossSiteRequestsRefused(t *testing.T) {
	a := startApp(t, nil)
	for _, h := range []map[string]string{
		{"Sec-Fetch-Site": "cross-site"},
		{"Origin": "http://evil.example"},
	} {
		if r := do(t, "POST", a.URL+"/lightbulb", h); r.StatusCode != http.StatusForbidden {
			t.Fatalf("cross-site POST with %v: %d, want 403", h, r.StatusCode)
		}
	}
	var state struct{ Lightbulb lightJSON }
	getJSON(t, a.URL+"/api/state", &state)
	if state.Lightbulb.On {
		t.Fatal("a refused request changed the light")
	}
	for _, h := range []map[string]string{
		{"Sec-Fetch-Site": "same-origin", "HX-Request": "true"},
		{"Origin": a.URL},
		nil, // curl
	} {
		if r := do(t, "POST", a.URL+"/lightbulb", h); r.StatusCode >= 300 {
			t.Fatalf("same-origin or curl POST with %v: %d", h, r.StatusCode)
		}
	}
}

func TestRateLimits(t *testing.T) {
	a := startApp(t, nil, "-hi-rate", "1", "-hi-burst", "3", "-lightbulb-rate", "5", "-lightbulb-burst", "10")
	for i := range 3 {
		if r := do(t, "POST", a.URL+"/hi", nil); r.StatusCode != http.StatusCreated {
			t.Fatalf("hi %d: %d", i, r.StatusCode)
		}
	}
	r := do(t, "POST", a.URL+"/hi", nil)
	if r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("4th hi at once: %d, want 429", r.StatusCode)
	}
	if s, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || s < 1 {
		t.Fatalf("Retry-After %q", r.Header.Get("Retry-After"))
	}
	var state struct{ Messages []struct{ Text string } }
	getJSON(t, a.URL+"/api/state", &state)
	if len(state.Messages) != 3 {
		t.Fatalf("%d messages stored, want 3", len(state.Messages))
	}
	limited := 0
	for range 12 {
		if do(t, "POST", a.URL+"/lightbulb", nil).StatusCode == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("12 switches at once were all allowed with a burst of 10")
	}
	// Streams are never rate limited.
	for range 10 {
		s := openStream(t, a.URL, nil, "/events?format=json")
		s.waitFor(t, "tabs", func(string) bool { return true })
	}
}

func TestStreamCaps(t *testing.T) {
	a := startApp(t, nil, "-streams-per-client", "3", "-max-streams", "5", "-trust-proxy")
	for range 3 {
		openStream(t, a.URL, nil, "/events?format=json").waitFor(t, "tabs", func(string) bool { return true })
	}
	if r := do(t, "GET", a.URL+"/events", nil); r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("4th stream from one address: %d, want 429", r.StatusCode)
	}
	// Behind the trusted proxy, other clients have their own allowance,
	// up to the instance's cap.
	other := map[string]string{"Fly-Client-IP": "203.0.113.7"}
	for i := range 2 {
		if r := do(t, "GET", a.URL+"/events?x="+strconv.Itoa(i), other); r.StatusCode != http.StatusOK {
			t.Fatalf("other client's stream %d: %d", i, r.StatusCode)
		}
	}
	if r := do(t, "GET", a.URL+"/healthz", nil); r.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %d", r.StatusCode)
	}
}

func TestClientAddressHeadersNeedTrust(t *testing.T) {
	a := startApp(t, nil, "-streams-per-client", "1")
	openStream(t, a.URL, nil, "/events?format=json").waitFor(t, "tabs", func(string) bool { return true })
	// Without -trust-proxy a client cannot escape its cap by naming another address.
	if r := do(t, "GET", a.URL+"/events", map[string]string{"Fly-Client-IP": "203.0.113.9", "X-Forwarded-For": "198.51.100.1"}); r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("spoofed address: %d, want 429", r.StatusCode)
	}
}

func TestSecurityHeaders(t *testing.T) {
	a := startApp(t, nil)
	r := do(t, "GET", a.URL+"/", nil)
	csp := r.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Fatalf("CSP %q", csp)
	}
	if r.Header.Get("X-Content-Type-Options") != "nosniff" || r.Header.Get("Referrer-Policy") == "" {
		t.Fatalf("headers %v", r.Header)
	}
	if ck := r.Header.Get("Set-Cookie"); strings.Contains(ck, "Secure") {
		t.Fatalf("cookie over plain HTTP must not be Secure: %q", ck)
	}
	// A forwarded-proto header from an untrusted client changes nothing...
	if ck := do(t, "GET", a.URL+"/", map[string]string{"X-Forwarded-Proto": "https"}).Header.Get("Set-Cookie"); strings.Contains(ck, "Secure") {
		t.Fatalf("untrusted X-Forwarded-Proto made the cookie Secure: %q", ck)
	}
	// ...but behind a trusted TLS-terminating proxy the cookie is Secure.
	b := startApp(t, nil, "-trust-proxy")
	if ck := do(t, "GET", b.URL+"/", map[string]string{"X-Forwarded-Proto": "https"}).Header.Get("Set-Cookie"); !strings.Contains(ck, "Secure") {
		t.Fatalf("cookie behind a TLS proxy not Secure: %q", ck)
	}
}

// rawStream opens a stream with extra header lines, returns its status and
// keeps the connection open until the test ends.
func rawStream(t *testing.T, base, headers string) int {
	t.Helper()
	addr := strings.TrimPrefix(base, "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /events?format=json HTTP/1.1\r\nHost: %s\r\n%s\r\n", addr, headers)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode
}

// A client given a whole IPv6 /64 gets the allowance of one address, not
// one per address it rotates through.
func TestStreamCapKeysIPv6By64(t *testing.T) {
	a := startApp(t, nil, "-streams-per-client", "20", "-trust-proxy")
	codes := map[int]int{}
	for i := range 30 {
		codes[rawStream(t, a.URL, fmt.Sprintf("Fly-Client-IP: 2001:db8:7:7:%x::1\r\n", i+1))]++
	}
	if codes[http.StatusOK] != 20 || codes[http.StatusTooManyRequests] != 10 {
		t.Fatalf("30 streams from one /64 with a cap of 20: %v", codes)
	}
	if code := rawStream(t, a.URL, "Fly-Client-IP: 2001:db8:7:8::1\r\n"); code != http.StatusOK {
		t.Fatalf("a stream from another /64: %d", code)
	}
}
