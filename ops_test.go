package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMetrics(t *testing.T) {
	a := startApp(t, nil)
	s := openStream(t, a.URL, nil, "/events?format=json")
	s.waitFor(t, "tabs", func(string) bool { return true })
	postTo(t, a.URL, "/lightbulb", nil)
	s.waitFor(t, "light", contains(`"on":true`))
	resp, err := http.Get(a.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(b)
	for _, want := range []string{
		"gp_sse_connections 1",
		`gp_http_requests_total{code="200",method="POST",route="/lightbulb"} 1`,
		"gp_events_published_total", "gp_events_delivered_total", "gp_subscribers_evicted_total 0",
		"gp_events_coalesced_total", "gp_renders_total", "gp_changes_total",
		"go_goroutines", "process_resident_memory_bytes",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// Logs are JSON lines with request IDs, and never carry the store's password.
func TestLogsAreStructuredWithoutSecrets(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	a := startApp(t, map[string]string{"REDIS_URL": fmt.Sprintf("redis://user:s3cret-pw@127.0.0.1:%d/0", port)})
	postTo(t, a.URL, "/hi", nil) // 503: the store is down
	resp, err := http.Get(a.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	id := resp.Header.Get("X-Request-Id")
	if id == "" {
		t.Fatal("no X-Request-Id")
	}
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	logs := a.logs.String()
	if strings.Contains(logs, "s3cret-pw") {
		t.Fatalf("the store password is in the logs:\n%s", logs)
	}
	found := false
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		found = found || entry["id"] == id
	}
	if !found {
		t.Fatalf("no log line with request id %s:\n%s", id, logs)
	}
}

// After a burst of stream opens (a reconnect storm), the garbage the opens
// left is collected and returned to the OS once the burst is over, instead
// of staying in the process while its streams sit idle.
func TestMemoryReturnedAfterABurstOfOpens(t *testing.T) {
	// Every open comes from 127.0.0.1, faster than the server hijacks them.
	a := startApp(t, nil, "-streams-per-client", "2000", "-conns-per-client", "2000")
	addr := strings.TrimPrefix(a.URL, "http://")
	for range 1000 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		fmt.Fprintf(c, "GET /events HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
	}
	const line = `"msg":"returned memory to the OS after a burst of stream opens or closes","opens":1000`
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(a.logs.String(), line) {
		if time.Now().After(deadline) {
			t.Fatal("no memory returned after 1,000 opens")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Errors answered by the error handler (the store down: 503; a bad request:
// 400; a wrong method: 405) are logged and counted with the status sent,
// not the 200 the response held before the error handler wrote it.
func TestErrorStatusLoggedAndCounted(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	a := startApp(t, map[string]string{"REDIS_URL": fmt.Sprintf("redis://127.0.0.1:%d/0", port)})
	// Answered once: one JSON message, not one per middleware.
	if code, body := post(t, &http.Client{Timeout: 10 * time.Second}, a.URL+"/hi", url.Values{"text": {"nobody hears"}}); code != http.StatusServiceUnavailable ||
		body != `{"error":"the store is unavailable; try again shortly"}`+"\n" {
		t.Fatalf("a post with the store down: %d %q, want 503 and one error message", code, body)
	}
	if code := postTo(t, a.URL, "/lightbulb", url.Values{"state": {"dim"}}); code != http.StatusBadRequest {
		t.Fatalf("a bad lightbulb state: %d, want 400", code)
	}
	resp, err := http.Get(a.URL + "/hi")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET /hi: %d, want 405", resp.StatusCode)
	}

	resp, err = http.Get(a.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var counted []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "gp_http_requests_total{") {
			counted = append(counted, line)
		}
	}
	for _, want := range []string{
		`gp_http_requests_total{code="503",method="POST",route="/hi"} 1`,
		`gp_http_requests_total{code="400",method="POST",route="/lightbulb"} 1`,
		`gp_http_requests_total{code="405",method="GET",route="/hi"} 1`,
	} {
		if !slices.Contains(counted, want) {
			t.Errorf("/metrics lacks %s; it counts:\n%s", want, strings.Join(counted, "\n"))
		}
	}

	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		status float64
		level  string
	}{
		"POST /hi":        {503, "ERROR"},
		"POST /lightbulb": {400, "INFO"},
		"GET /hi":         {405, "INFO"},
	}
	for _, line := range strings.Split(strings.TrimSpace(a.logs.String()), "\n") {
		var entry struct {
			Msg, Level, Method, Path string
			Status                   float64
		}
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		key := entry.Method + " " + entry.Path
		w, ok := want[key]
		if entry.Msg != "request" || !ok {
			continue
		}
		if entry.Status != w.status || entry.Level != w.level {
			t.Errorf("access log of %s: status %v at %s, want %v at %s: %s", key, entry.Status, entry.Level, w.status, w.level, line)
		}
		delete(want, key)
	}
	for key := range want {
		t.Errorf("no access log line for %s:\n%s", key, a.logs.String())
	}
}
