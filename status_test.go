package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/r3labs/sse/v2"

	"globalpresence/internal/redisnode"
)

type statusJSON struct {
	Live   bool   `json:"live"`
	Reason string `json:"reason"`
}

// The embedded store is always live: a new stream's snapshot starts with
// status {"live":true}, and the page has the element it swaps into.
func TestStreamSnapshotSaysLive(t *testing.T) {
	a := startApp(t, nil)
	s := openStream(t, a.URL, nil, "/events?format=json")
	for first := false; !first; {
		select {
		case ev := <-s.events:
			if len(ev.Event) == 0 { // the retry field
				continue
			}
			if string(ev.Event) != "status" || string(ev.Data) != `{"live":true}` {
				t.Fatalf("first event %q %q, want status {\"live\":true}", ev.Event, ev.Data)
			}
			first = true
		case <-time.After(10 * time.Second):
			t.Fatal("no snapshot within 10 s")
		}
	}
	h := openStream(t, a.URL, nil, "/events")
	h.waitFor(t, "status", contains(`class="live"`))

	resp, err := http.Get(a.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	const el = `<p id="status" class="status" role="status" aria-live="polite" sse-swap="status"><span class="live">Live</span></p>`
	if !strings.Contains(string(page), el) {
		t.Fatalf("page lacks %s", el)
	}
}

// An instance cut off from its node tells its streams (status not live, the
// page's "reconnecting…") and keeps showing the last state read, never an
// emptied room; once the node is back, the streams are told it is live.
func TestStoreLostStreamsAreTold(t *testing.T) {
	node := redisnode.MustStart(t, redisnode.Options{})
	a := startApp(t, map[string]string{"REDIS_URL": node.URL(), "FLY_REGION": "ams"})
	waitReadyz(t, a.URL, http.StatusOK, 15*time.Second)
	if code := postTo(t, a.URL, "/lightbulb", url.Values{"state": {"on"}}); code != http.StatusOK {
		t.Fatalf("flip: %d", code)
	}
	if code := postTo(t, a.URL, "/hi", url.Values{"text": {"before the outage"}}); code != http.StatusCreated {
		t.Fatalf("hi: %d", code)
	}

	js := openStream(t, a.URL, nil, "/events?format=json")
	html := openStream(t, a.URL, nil, "/events")
	waitJSON(t, js, "status", func(v statusJSON) bool { return v.Live })
	waitJSON(t, js, "light", func(v lightJSON) bool { return v.On })
	js.waitFor(t, "messages", contains("before the outage"))
	waitJSON(t, js, "tabs", func(tabsJSON) bool { return true }) // the end of the snapshot
	html.waitFor(t, "status", contains(`class="live"`))

	if err := node.Stop(); err != nil {
		t.Fatal(err)
	}
	lost := time.Now()
	// Every event until the node is back must show the last state read.
	var events []*sse.Event
	next := func(within time.Duration) *sse.Event {
		t.Helper()
		select {
		case ev := <-js.events:
			events = append(events, ev)
			return ev
		case <-js.done:
			t.Fatal("stream ended during the outage")
		case <-time.After(within):
			t.Fatalf("nothing within %v of the node stopping; got %s", within, names(events))
		}
		return nil
	}
	var status statusJSON
	for {
		ev := next(5*time.Second - time.Since(lost))
		if string(ev.Event) == "status" {
			if err := json.Unmarshal(ev.Data, &status); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if status.Live || status.Reason == "" {
		t.Fatalf("status after the node stopped: %+v, want not live with a reason", status)
	}
	t.Logf("told %v after the node stopped: %+v", time.Since(lost).Round(time.Millisecond), status)
	html.waitFor(t, "status", contains("Reconnecting"))

	var state struct {
		Lightbulb lightJSON `json:"lightbulb"`
		regionsJSON
		Messages []struct{ Text string } `json:"messages"`
		Status   statusJSON              `json:"status"`
	}
	getJSON(t, a.URL+"/api/state", &state)
	if state.Status.Live || !state.Lightbulb.On || len(state.Messages) != 1 || state.Messages[0].Text != "before the outage" {
		t.Fatalf("/api/state while the node is down: %+v", state)
	}

	// A while with the node down: nothing on the stream may empty the room.
	quiet := time.After(2 * time.Second)
	for waiting := true; waiting; {
		select {
		case ev := <-js.events:
			events = append(events, ev)
		case <-quiet:
			waiting = false
		}
	}
	if err := node.Restart(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		ev := next(time.Until(deadline))
		if string(ev.Event) == "status" && json.Unmarshal(ev.Data, &status) == nil && status.Live {
			break
		}
	}
	html.waitFor(t, "status", contains(`class="live"`))

	for _, ev := range events[:len(events)-1] { // all but the status live again
		var empty bool
		switch string(ev.Event) {
		case "light":
			var l lightJSON
			empty = json.Unmarshal(ev.Data, &l) != nil || !l.On
		case "messages":
			empty = !strings.Contains(string(ev.Data), "before the outage")
		case "regions":
			var r regionsJSON
			empty = json.Unmarshal(ev.Data, &r) != nil || len(r.Regions) == 0 || r.Regions[0].Count == 0
		case "tabs":
			var n tabsJSON
			empty = json.Unmarshal(ev.Data, &n) != nil || n.Tabs == 0
		}
		if empty {
			t.Errorf("while the node was down the stream got %s %s", ev.Event, ev.Data)
		}
	}
}

func names(evs []*sse.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		b.Write(ev.Event)
		b.WriteByte(' ')
	}
	return b.String()
}

// The page, in a real browser: the status element says "Live", the notice
// while the node is down (with what is shown dimmed, the light still on),
// and "Live" again once it is back; htmx swaps it, no script of ours.
func TestBrowserShowsTheStoreLost(t *testing.T) {
	exe := findChromium(t)
	node := redisnode.MustStart(t, redisnode.Options{})
	a := startApp(t, map[string]string{"REDIS_URL": node.URL(), "FLY_REGION": "ams"})
	waitReadyz(t, a.URL, http.StatusOK, 15*time.Second)
	if code := postTo(t, a.URL, "/lightbulb", url.Values{"state": {"on"}}); code != http.StatusOK {
		t.Fatalf("flip: %d", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	p := openProfile(t, ctx, exe, "A", a.URL)
	p.waitFor(t, "the page says live", textIs("#status", "Live"))
	p.waitFor(t, "the stream is open", textIs(".region.here .count", "1 user"))

	if err := node.Stop(); err != nil {
		t.Fatal(err)
	}
	p.waitFor(t, "the page says reconnecting", `document.querySelector("#status .stale")?.textContent.startsWith("Reconnecting")`)
	p.waitFor(t, "what is shown is dimmed", `getComputedStyle(document.querySelector("section.light")).opacity < 1`)
	if got := p.text(t, "#light-state"); got != "on" {
		t.Errorf("light while the node is down: %q, want the last state read, on", got)
	}
	p.screenshot(t, "store-lost.png")

	if err := node.Restart(); err != nil {
		t.Fatal(err)
	}
	p.waitFor(t, "the page says live again", textIs("#status", "Live"))
	p.waitFor(t, "nothing is dimmed", `getComputedStyle(document.querySelector("section.light")).opacity == 1`)
}
