package main

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
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

	redisnode.MustStart(t, redisnode.Options{Port: port})
	waitReadyz(t, a.URL, http.StatusOK, 15*time.Second)
	if code := postTo(t, a.URL, "/hi", url.Values{"text": {"store is up"}}); code != http.StatusCreated {
		t.Fatalf("a write once the store is up: %d", code)
	}
	s.waitFor(t, "messages", contains("store is up"))
	// The stream opened while the store was down is counted once it is up.
	waitJSON(t, s, "regions", func(r regionsJSON) bool {
		for _, reg := range r.Regions {
			if reg.Region == "ams" && reg.Count == 1 {
				return true
			}
		}
		return false
	})
}
