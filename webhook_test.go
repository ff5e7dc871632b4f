package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"globalpresence/internal/cluster"
)

const hookSecret = "a-webhook-secret-of-at-least-32-bytes"

// hookEvent is one webhook event as a receiver reads it.
type hookEvent struct {
	ID, Type, Room, User, Region string
	At                           time.Time
}

func (e hookEvent) String() string { return e.Type + " " + e.User }

// hookReceiver is a site's webhook endpoint: it verifies every request as
// the README tells receivers to, and collects the events.
type hookReceiver struct {
	t       *testing.T
	URL     string
	mu      sync.Mutex
	events  []hookEvent
	batches []time.Time // arrival of each accepted request
	refused int
	refuse  func() bool // answer 503 while true
}

func newHookReceiver(t *testing.T) *hookReceiver {
	r := &hookReceiver{t: t, refuse: func() bool { return false }}
	srv := httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

func (r *hookReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.refuse() {
		r.refused++
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	mac := hmac.New(sha256.New, []byte(hookSecret))
	mac.Write(body)
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(req.Header.Get("X-Presence-Signature")), []byte(want)) {
		r.t.Errorf("bad signature %q on %s", req.Header.Get("X-Presence-Signature"), body)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var b struct {
		Timestamp int64       `json:"timestamp"`
		Events    []hookEvent `json:"events"`
	}
	ts, err := strconv.ParseInt(req.Header.Get("X-Presence-Timestamp"), 10, 64)
	if err := errors.Join(err, json.Unmarshal(body, &b)); err != nil || ts != b.Timestamp || time.Since(time.Unix(ts, 0)).Abs() > 5*time.Minute {
		r.t.Errorf("bad timestamp %q or body %s: %v", req.Header.Get("X-Presence-Timestamp"), body, err)
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	for _, e := range b.Events {
		if e.ID == "" || e.At.IsZero() || e.At.Location() != time.UTC {
			r.t.Errorf("event without an ID or UTC time: %+v", e)
		}
	}
	r.events = append(r.events, b.Events...)
	r.batches = append(r.batches, time.Now())
}

func (r *hookReceiver) refusedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refused
}

// room returns the events of one room so far, as "type user".
func (r *hookReceiver) room(name string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		if e.Room == name {
			out = append(out, e.String())
		}
	}
	return out
}

// wait waits until the room's events are want, and fails if they are not
// within d (or become more).
func (r *hookReceiver) wait(room string, want []string, d time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for !slices.Equal(r.room(room), want) {
		if time.Now().After(deadline) {
			r.t.Fatalf("room %s: events %q, want %q", room, r.room(room), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// quiet checks that nothing more arrives for the room for a while: longer
// than the debounce and a batch.
func (r *hookReceiver) quiet(room string, want []string) {
	r.t.Helper()
	time.Sleep(3500 * time.Millisecond)
	if got := r.room(room); !slices.Equal(got, want) {
		r.t.Fatalf("room %s: events %q, want still %q", room, got, want)
	}
}

// checkUnique fails on a repeated event ID.
func (r *hookReceiver) checkUnique() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	for _, e := range r.events {
		if seen[e.ID] {
			r.t.Errorf("event %s (%s %s) delivered twice", e.ID, e.Room, e)
		}
		seen[e.ID] = true
	}
}

// checkPace fails on batches closer than a second: with one sender only.
func (r *hookReceiver) checkPace() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := 1; i < len(r.batches); i++ {
		if gap := r.batches[i].Sub(r.batches[i-1]); gap < 900*time.Millisecond {
			r.t.Errorf("batches %d and %d only %v apart: at most one a second", i-1, i, gap)
		}
	}
}

func TestWebhooks(t *testing.T) {
	rcv := newHookReceiver(t)
	a := startApp(t, map[string]string{"WEBHOOK_SECRET": hookSecret}, "-webhook-url", rcv.URL)
	waitReadyz(t, a.URL, http.StatusOK, 10*time.Second)
	alice, bob := newBrowserClient(t), newBrowserClient(t)
	visit(t, a, alice)
	visit(t, a, bob)
	ida, idb := fullID(t, a, alice), fullID(t, a, bob)
	const room = "hooks/one"
	open := func(b *http.Client) *stream {
		s := openStream(t, a.URL, b, "/rooms/"+room+"/events?format=json")
		s.waitFor(t, "tabs", func(string) bool { return true }) // joined
		return s
	}
	tab1 := open(alice)
	want := []string{"room.occupied ", "member.added " + ida}
	rcv.wait(room, want, 10*time.Second)

	tab2 := open(alice) // a second tab: nothing
	tab2.close()
	tab1.close() // a reload: gone from the index, back at once; nothing
	waitAPI[roomsJSON](t, a.URL+"/api/rooms?prefix=hooks/", "", "")
	tab1 = open(alice)
	rcv.quiet(room, want)

	tabB := open(bob)
	want = append(want, "member.added "+idb)
	rcv.wait(room, want, 10*time.Second)
	tabB.close()
	want = append(want, "member.removed "+idb)
	rcv.wait(room, want, 10*time.Second)
	tab1.close()
	want = append(want, "member.removed "+ida, "room.vacated ")
	rcv.wait(room, want, 10*time.Second)
	rcv.quiet(room, want)
	rcv.checkUnique()
	rcv.checkPace()
	if n := metricValue(t, a.URL, `gp_webhook_events_total{result="delivered"}`); n != "6" {
		t.Errorf("gp_webhook_events_total{result=\"delivered\"} %s, want 6", n)
	}
}

// An endpoint down for 30 s misses nothing: everything arrives after it,
// in order.
func TestWebhooksEndpointDown(t *testing.T) {
	rcv := newHookReceiver(t)
	up := time.Now().Add(30 * time.Second)
	rcv.refuse = func() bool { return time.Now().Before(up) }
	a := startApp(t, map[string]string{"WEBHOOK_SECRET": hookSecret}, "-webhook-url", rcv.URL)
	waitReadyz(t, a.URL, http.StatusOK, 10*time.Second)
	browser := newBrowserClient(t)
	visit(t, a, browser)
	id := fullID(t, a, browser)
	for i := range 5 {
		room := fmt.Sprint("down/", i)
		s := openStream(t, a.URL, browser, "/rooms/"+room+"/events?format=json")
		s.waitFor(t, "tabs", func(string) bool { return true })
		time.Sleep(2500 * time.Millisecond) // each in a batch of its own
		s.close()
	}
	time.Sleep(time.Until(up))
	rcv.mu.Lock()
	refused := rcv.refused
	rcv.mu.Unlock()
	if refused == 0 {
		t.Fatal("nothing was sent while the endpoint was down")
	}
	for i := range 5 {
		rcv.wait(fmt.Sprint("down/", i), []string{"room.occupied ", "member.added " + id, "member.removed " + id, "room.vacated "}, 45*time.Second)
	}
	rcv.checkUnique()
	rcv.checkPace()
	if failed, queued := metricValue(t, a.URL, `gp_webhook_requests_total{result="error"}`), metricValue(t, a.URL, "gp_webhook_queue_events"); failed == "" || queued != "0" {
		t.Errorf("%s failed requests, %s events queued; want some, and none", failed, queued)
	}
}

// Across 3 regions (two instances in ams) every transition arrives once,
// though every instance sees it; kill -9 of the instance holding a user's
// only tabs removes them within 10 s.
func TestMultiRegionWebhooks(t *testing.T) {
	rcv := newHookReceiver(t)
	c := startClusterWith(t, []string{"-webhook-url", rcv.URL}, []string{"WEBHOOK_SECRET=" + hookSecret})
	ams, iad, syd := c.Region("ams"), c.Region("iad"), c.Region("syd")
	u, v, w := newBrowserClient(t), newBrowserClient(t), newBrowserClient(t)
	home := &app{URL: ams.Apps[0].URL()}
	for _, b := range []*http.Client{u, v, w} {
		visit(t, home, b) // one identity each, on every instance
	}
	idu, idv, idw := fullID(t, home, u), fullID(t, home, v), fullID(t, home, w)
	open := func(a *cluster.App, b *http.Client, room string) *stream {
		s := openStream(t, a.URL(), b, "/rooms/"+room+"/events?format=json")
		s.waitFor(t, "tabs", func(string) bool { return true })
		return s
	}
	wantA := []string{"room.occupied ", "member.added " + idu}
	ua1 := open(ams.Apps[0], u, "wh/a")
	ua2 := open(iad.Apps[0], u, "wh/a") // u's second instance: nothing
	rcv.wait("wh/a", wantA, 10*time.Second)
	open(ams.Apps[1], v, "wh/a")
	wantA = append(wantA, "member.added "+idv)
	rcv.wait("wh/a", wantA, 10*time.Second)
	wantB := []string{"room.occupied ", "member.added " + idw}
	wb := open(syd.Apps[0], w, "wh/b")
	rcv.wait("wh/b", wantB, 10*time.Second)
	open(ams.Apps[1], v, "wh/b")
	wantB = append(wantB, "member.added "+idv)
	rcv.wait("wh/b", wantB, 10*time.Second)

	killed := time.Now()
	if err := ams.Apps[1].Kill(); err != nil { // v's only tabs
		t.Fatal(err)
	}
	wantA = append(wantA, "member.removed "+idv)
	wantB = append(wantB, "member.removed "+idv)
	rcv.wait("wh/a", wantA, 10*time.Second-time.Since(killed))
	rcv.wait("wh/b", wantB, 10*time.Second-time.Since(killed))
	t.Logf("member.removed arrived %v after kill -9", time.Since(killed).Round(time.Millisecond))

	for _, s := range []*stream{ua1, ua2, wb} {
		s.close()
	}
	wantA = append(wantA, "member.removed "+idu, "room.vacated ")
	wantB = append(wantB, "member.removed "+idw, "room.vacated ")
	rcv.wait("wh/a", wantA, 10*time.Second)
	rcv.wait("wh/b", wantB, 10*time.Second)
	rcv.quiet("wh/a", wantA)
	rcv.quiet("wh/b", wantB)
	rcv.checkUnique()
}

// Events an instance claimed but could not deliver are not lost when it
// dies: they wait in its outbox in the store, and the instance that sees it
// gone delivers them. The endpoint is down while every instance but the
// one holding the viewers is killed -9, so each room's events, whichever
// instance claimed them, reach the endpoint only through that survivor.
func TestWebhooksOutliveTheirSender(t *testing.T) {
	rcv := newHookReceiver(t)
	var up sync.Mutex // held while the endpoint is down
	var down bool
	rcv.refuse = func() bool { up.Lock(); defer up.Unlock(); return down }
	setDown := func(d bool) { up.Lock(); down = d; up.Unlock() }
	setDown(true)
	c := startClusterWith(t, []string{"-webhook-url", rcv.URL}, []string{"WEBHOOK_SECRET=" + hookSecret})
	ams, iad, syd := c.Region("ams"), c.Region("iad"), c.Region("syd")
	survivor := ams.Apps[0]
	// Every sender must know all four instances before the rooms open: one
	// that has read only itself sends every room (at least once), leaving
	// none to the instances killed below.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		n, err := c.Primary.Do("EVAL", "return #redis.call('KEYS', ARGV[1])", "0", "gp::inst:*")
		if err == nil && n == "4" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("live instances in the store: %s (%v), want 4", n, err)
		}
	}
	time.Sleep(1500 * time.Millisecond) // a sender re-reads them every second
	b := newBrowserClient(t)
	home := &app{URL: survivor.URL()}
	visit(t, home, b)
	id := fullID(t, home, b)
	const rooms = 16 // claimed by 4 instances: some surely by those killed
	for i := range rooms {
		s := openStream(t, survivor.URL(), b, fmt.Sprintf("/rooms/wh/out-%d/events?format=json", i))
		s.waitFor(t, "tabs", func(string) bool { return true })
	}
	// Past the debounce, every room's events are claimed and queued.
	deadline := time.Now().Add(15 * time.Second)
	for rcv.refusedCount() < 3 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	for _, a := range []*cluster.App{ams.Apps[1], iad.Apps[0], syd.Apps[0]} {
		if err := a.Kill(); err != nil {
			t.Fatal(err)
		}
	}
	// Their liveness keys expire (6 s); then the endpoint comes back.
	time.Sleep(8 * time.Second)
	setDown(false)
	for i := range rooms {
		rcv.wait(fmt.Sprintf("wh/out-%d", i), []string{"room.occupied ", "member.added " + id}, 45*time.Second)
	}
	if !strings.Contains(survivor.Log(), "took over a gone instance's webhook events") {
		t.Fatalf("no room's events were claimed by a killed instance: the takeover went untested\n%s", survivor.Log())
	}
	rcv.checkUnique()
}

// A webhook URL needs a usable URL and a secret long enough to sign with.
func TestWebhookConfig(t *testing.T) {
	for _, c := range []struct {
		url, secret, want string
	}{
		{"http://127.0.0.1:1/hook", "", "WEBHOOK_SECRET"},
		{"http://127.0.0.1:1/hook", "short", "WEBHOOK_SECRET"},
		{"ftp://127.0.0.1/hook", hookSecret, "-webhook-url"},
		{"/hook", hookSecret, "-webhook-url"},
	} {
		err := run(context.Background(), []string{"-addr", "127.0.0.1:0", "-webhook-url", c.url},
			func(k string) string { return map[string]string{"WEBHOOK_SECRET": c.secret}[k] }, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("-webhook-url %q, WEBHOOK_SECRET %q: %v, want an error naming %s", c.url, c.secret, err, c.want)
		}
	}
}
