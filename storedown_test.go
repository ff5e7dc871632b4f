package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"globalpresence/internal/redisnode"
)

// The store down when the app starts: it serves the page and the stream,
// reports not ready, and connects by itself once the store comes up.
func TestStoreDownAtStart(t *testing.T) {
	if _, err := redisnode.RedisServerPath(); err != nil {
		t.Skip(err) // redisnode.MustStart below fails loudly in CI
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	a := startApp(t, map[string]string{"REDIS_URL": fmt.Sprintf("redis://127.0.0.1:%d/0", port), "FLY_REGION": "ams"})
	if code := readyz(t, a.URL); code != http.StatusServiceUnavailable {
		t.Fatalf("readyz with no store: %d", code)
	}
	visit(t, a, newBrowserClient(t))
	s := openStream(t, a.URL, nil, "/events?format=json")
	s.waitFor(t, "tabs", func(string) bool { return true })
	if code := postTo(t, a.URL, "/hi", nil); code != http.StatusServiceUnavailable {
		t.Fatalf("a write with no store: %d, want 503", code)
	}

	node := redisnode.MustStart(t, redisnode.Options{Port: port})
	waitReadyz(t, a.URL, http.StatusOK, 15*time.Second)
	if code := postTo(t, a.URL, "/hi", url.Values{"text": {"store is up"}}); code != http.StatusCreated {
		t.Fatalf("a write once the store is up: %d", code)
	}
	s.waitFor(t, "messages", contains("store is up"))
	// The stream opened while the store was down is counted (here at once,
	// and in the store once it is up).
	var state regionsJSON
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		getJSON(t, a.URL+"/api/state", &state)
		if len(state.Regions) == 1 && state.Regions[0].Region == "ams" && state.Regions[0].Count == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stream opened while the store was down is not counted: %+v", state)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		keys, _ := node.Do("KEYS", "gp:home:tabs:*")
		if n, _ := node.Do("HLEN", keys); n == "2" { // the tab and the sequence
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the tab opened while the store was down never reached it: %q", keys)
		}
	}

	// Losing the store and regaining it: logged once each, counted, and
	// a write meanwhile is a 503 in the access log and the metrics.
	if err := node.Stop(); err != nil {
		t.Fatal(err)
	}
	waitReadyz(t, a.URL, http.StatusServiceUnavailable, 5*time.Second)
	if code := postTo(t, a.URL, "/lightbulb", nil); code != http.StatusServiceUnavailable {
		t.Fatalf("a flip with the store lost: %d, want 503", code)
	}
	if err := node.Restart(); err != nil {
		t.Fatal(err)
	}
	waitReadyz(t, a.URL, http.StatusOK, 15*time.Second)
	logs := a.logs.String()
	for _, line := range []string{"store lost", "store regained"} {
		if n := strings.Count(logs, line); n != 1 {
			t.Errorf("%q logged %d times, want once:\n%s", line, n, logs)
		}
	}
	resp, err := http.Get(a.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`gp_store_events_total{kind="store_lost"} 1`, `gp_store_events_total{kind="store_regained"} 1`,
		`gp_http_requests_total{code="503",method="POST",route="/lightbulb"} 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
