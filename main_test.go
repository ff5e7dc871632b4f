package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

type lightJSON struct {
	On     bool   `json:"on"`
	Flips  uint64 `json:"flips"`
	By     string `json:"by"`
	Region string `json:"region"`
}

type tabsJSON struct {
	Tabs int `json:"tabs"`
}

type regionsJSON struct {
	Regions []struct {
		Region string `json:"region"`
		City   string `json:"city"`
		Count  int    `json:"count"`
		Users  []struct {
			ID     string `json:"id"`
			Colour string `json:"colour"`
			Tabs   int    `json:"tabs"`
		} `json:"users"`
	} `json:"regions"`
}

// tabsOf finds a user's tab count in a regions event (0 if absent).
func (r regionsJSON) tabsOf(id string) int {
	n := 0
	for _, reg := range r.Regions {
		for _, u := range reg.Users {
			if u.ID == id {
				n += u.Tabs
			}
		}
	}
	return n
}

func post(t testing.TB, c *http.Client, u string, form url.Values) (int, string) {
	t.Helper()
	resp, err := c.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The viewer's own ID: the cards above it list other users.
var pageID = regexp.MustCompile(`id="you-id">User #([0-9A-F]{8})`)

// visit loads the page as a browser would and returns the user ID it shows.
func visit(t testing.TB, a *app, c *http.Client) string {
	t.Helper()
	resp, err := c.Get(a.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := pageID.FindSubmatch(b)
	if resp.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("page: %d, no user ID in it", resp.StatusCode)
	}
	return string(m[1])
}

func TestTwoStreamsSeeAPost(t *testing.T) {
	a := startApp(t, nil)
	s1 := openStream(t, a.URL, newBrowserClient(t), "/events?format=json")
	s2 := openStream(t, a.URL, newBrowserClient(t), "/events?format=json")
	for _, s := range []*stream{s1, s2} {
		waitJSON(t, s, "light", func(l lightJSON) bool { return !l.On })
	}
	curl := &http.Client{}
	if code, body := post(t, curl, a.URL+"/lightbulb", nil); code != http.StatusOK || !strings.Contains(body, `"on":true`) {
		t.Fatalf("toggle: %d %s", code, body)
	}
	for _, s := range []*stream{s1, s2} {
		waitJSON(t, s, "light", func(l lightJSON) bool { return l.On && len(l.By) == 8 && l.Region == "local" })
	}
	if code, body := post(t, curl, a.URL+"/hi", url.Values{"text": {"hello there"}}); code != http.StatusCreated || !strings.Contains(body, `"text":"hello there"`) {
		t.Fatalf("hi: %d %s", code, body)
	}
	for _, s := range []*stream{s1, s2} {
		s.waitFor(t, "messages", contains("hello there"))
	}
	if code, body := post(t, curl, a.URL+"/hi", nil); code != http.StatusCreated || !strings.Contains(body, "Hi from Localhost 👋") {
		t.Fatalf("default greeting: %d %s", code, body)
	}
	if code, body := post(t, curl, a.URL+"/lightbulb", url.Values{"state": {"off"}}); code != http.StatusOK || !strings.Contains(body, `"on":false`) {
		t.Fatalf("set off: %d %s", code, body)
	}
	s1.waitFor(t, "messages", contains("Hi from Localhost"))
	waitJSON(t, s2, "light", func(l lightJSON) bool { return !l.On })
}

// One connection is one tab: two streams with one cookie count 2 for that
// user everywhere, and closing one brings it back to 1 within a second.
func TestTabsFollowConnections(t *testing.T) {
	a := startApp(t, nil)
	x, y := newBrowserClient(t), newBrowserClient(t)
	xID := visit(t, a, x)
	watcher := openStream(t, a.URL, y, "/events?format=json")

	x1 := openStream(t, a.URL, x, "/events?format=json")
	x2 := openStream(t, a.URL, x, "/events?format=json")
	for _, s := range []*stream{x1, x2} {
		waitJSON(t, s, "tabs", func(v tabsJSON) bool { return v.Tabs == 2 })
	}
	waitJSON(t, watcher, "regions", func(r regionsJSON) bool { return r.tabsOf(xID) == 2 })

	x2.close()
	closed := time.Now()
	waitJSON(t, x1, "tabs", func(v tabsJSON) bool { return v.Tabs == 1 })
	waitJSON(t, watcher, "regions", func(r regionsJSON) bool { return r.tabsOf(xID) == 1 })
	if d := time.Since(closed); d > 5*time.Second {
		t.Errorf("closed tab noticed after %v", d)
	}
	var state regionsJSON
	getJSON(t, a.URL+"/api/state", &state)
	if state.tabsOf(xID) != 1 {
		t.Fatalf("api/state counts %d tabs for %s, want 1", state.tabsOf(xID), xID)
	}
}

func getJSON(t testing.TB, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func TestAPIStateShape(t *testing.T) {
	a := startApp(t, map[string]string{"FLY_REGION": "ams"})
	b := newBrowserClient(t)
	id := visit(t, a, b)
	s := openStream(t, a.URL, b, "/events?format=json")
	waitJSON(t, s, "tabs", func(v tabsJSON) bool { return v.Tabs == 1 })
	post(t, b, a.URL+"/lightbulb", url.Values{"state": {"on"}})
	post(t, b, a.URL+"/hi", url.Values{"text": {"one"}})

	var state struct {
		Room      string            `json:"room"`
		AppRegion map[string]string `json:"app_region"`
		regionsJSON
		Lightbulb struct {
			On     bool      `json:"on"`
			By     string    `json:"by"`
			Region string    `json:"region"`
			At     time.Time `json:"at"`
		} `json:"lightbulb"`
		Messages []struct {
			ID, User, Colour, Region, Text string
			At                             time.Time
		} `json:"messages"`
		Status map[string]any `json:"status"`
	}
	getJSON(t, a.URL+"/api/state", &state)
	if len(state.Status) != 1 || state.Status["live"] != true {
		t.Fatalf("status: %v, want {\"live\":true}", state.Status)
	}
	if state.Room != "home" || state.AppRegion["code"] != "ams" || state.AppRegion["city"] != "Amsterdam" {
		t.Fatalf("room/app region: %+v", state)
	}
	if len(state.Regions) != 1 || state.Regions[0].Region != "ams" || state.Regions[0].Count != 1 ||
		state.Regions[0].Users[0].ID != id || state.Regions[0].Users[0].Tabs != 1 || state.Regions[0].Users[0].Colour == "" {
		t.Fatalf("regions: %+v", state.Regions)
	}
	if l := state.Lightbulb; !l.On || l.By != id || l.Region != "ams" || time.Since(l.At) > time.Minute {
		t.Fatalf("lightbulb: %+v", l)
	}
	if len(state.Messages) != 1 || state.Messages[0].Text != "one" || state.Messages[0].User != id || state.Messages[0].ID == "" {
		t.Fatalf("messages: %+v", state.Messages)
	}
}

// Flaw 3 of the original: the first visit showed User #E3B0C442 and the ID
// on the page differed from the one on posted messages.
func TestFirstVisitHasItsOwnStableID(t *testing.T) {
	a := startApp(t, nil)
	b := newBrowserClient(t)
	resp, err := b.Get(a.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	ck := resp.Header.Get("Set-Cookie")
	if !strings.Contains(ck, "HttpOnly") || !strings.Contains(ck, "SameSite=Lax") {
		t.Fatalf("cookie %q must be HttpOnly and SameSite=Lax", ck)
	}
	id := string(pageID.FindSubmatch(body)[1])
	if id == "E3B0C442" {
		t.Fatal("first visit got the ID of an empty secret")
	}
	if again := visit(t, a, b); again != id {
		t.Fatalf("second visit is %s, first was %s", again, id)
	}
	_, msg := post(t, b, a.URL+"/hi", nil)
	if !strings.Contains(msg, `"user":"`+id+`"`) {
		t.Fatalf("message posted as someone else: %s", msg)
	}
	_, light := post(t, b, a.URL+"/lightbulb", nil)
	if !strings.Contains(light, `"by":"`+id+`"`) {
		t.Fatalf("flip attributed to someone else: %s", light)
	}
	s := openStream(t, a.URL, b, "/events?format=json")
	waitJSON(t, s, "regions", func(r regionsJSON) bool { return r.tabsOf(id) == 1 })
	if other := visit(t, a, newBrowserClient(t)); other == id {
		t.Fatal("two browsers share an ID")
	}
}

func TestColourIsServerChosenPerPageLoad(t *testing.T) {
	a := startApp(t, nil)
	b := newBrowserClient(t)
	colours := map[string]bool{}
	re := regexp.MustCompile(`sse-connect="/events\?colour=([a-z]+)"`)
	for range 20 {
		resp, err := b.Get(a.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := re.FindSubmatch(body)
		if m == nil {
			t.Fatal("page has no stream URL with a colour")
		}
		colours[string(m[1])] = true
	}
	if len(colours) < 2 {
		t.Fatalf("20 page loads all got colour %v", colours)
	}
}

func TestHTMXRequestsGetFragments(t *testing.T) {
	a := startApp(t, nil)
	req, _ := http.NewRequest(http.MethodPost, a.URL+"/lightbulb", nil)
	req.Header.Set("HX-Request", "true")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("htmx flip: %d, want 204", resp.StatusCode)
	}
	req, _ = http.NewRequest(http.MethodPost, a.URL+"/hi", strings.NewReader("text=yo&colour=teal"))
	req.Header.Set("HX-Request", "true")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || !strings.Contains(string(body), `id="hi-form"`) || !strings.Contains(string(body), `value="teal"`) {
		t.Fatalf("htmx hi: %d %s", resp.StatusCode, body)
	}
}

// Closing streams ends their handlers: nothing is left running per
// connection.
func TestClosedStreamsLeaveNothingBehind(t *testing.T) {
	a := startApp(t, nil, "-streams-per-client", "100")
	visit(t, a, newBrowserClient(t)) // warm up lazily started machinery
	runtime.GC()
	base := runtime.NumGoroutine()

	var streams []*stream
	for range 50 {
		streams = append(streams, openStream(t, a.URL, nil, "/events?format=json"))
	}
	for _, s := range streams {
		waitJSON(t, s, "tabs", func(v tabsJSON) bool { return v.Tabs == 1 })
	}
	for _, s := range streams {
		s.close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var state regionsJSON
		getJSON(t, a.URL+"/api/state", &state)
		http.DefaultClient.CloseIdleConnections()
		n := runtime.NumGoroutine()
		if state.Regions[0].Count == 0 && n <= base+2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after closing 50 streams: %d users present, %d goroutines (baseline %d)", state.Regions[0].Count, n, base)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestStreamFraming(t *testing.T) {
	a := startApp(t, nil, "-heartbeat", "50ms")
	resp, err := http.Get(a.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h := resp.Header
	if h.Get("Content-Type") != "text/event-stream; charset=utf-8" || h.Get("X-Accel-Buffering") != "no" || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("stream headers: %v", h)
	}
	var got strings.Builder
	buf := make([]byte, 4096)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(got.String(), "\n: heartbeat\n\n") && time.Now().Before(deadline) {
		n, err := resp.Body.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			break
		}
	}
	s := got.String()
	if !strings.HasPrefix(s, "retry: 2000\n\n") {
		t.Fatalf("stream must start with retry: %q", s[:min(len(s), 40)])
	}
	if !strings.Contains(s, "\n: heartbeat\n\n") {
		t.Fatalf("no heartbeat comment within 5 s: %q", s)
	}
	// Multi-line HTML arrives as one event, every line a data field.
	if !strings.HasPrefix(s, "retry: 2000\n\nevent: status\ndata: ") {
		t.Fatalf("snapshot must start with the status: %q", s[:min(len(s), 60)])
	}
	for _, part := range []string{"status", "light", "regions", "messages", "latency", "tabs"} {
		if !strings.Contains(s, "event: "+part+"\ndata: ") {
			t.Fatalf("snapshot lacks %s: %q", part, s)
		}
	}
	if !strings.Contains(s, "data: <article") || !strings.Contains(s, "data: </article>") {
		t.Fatalf("regions fragment not split into data lines: %q", s)
	}

	// The r3labs client rebuilds the whole fragment, escaped.
	st := openStream(t, a.URL, nil, "/events")
	post(t, &http.Client{}, a.URL+"/hi", url.Values{"text": {`<script>alert("x")</script>`}})
	data := st.waitFor(t, "messages", contains("alert"))
	if strings.Contains(data, "<script>") || !strings.Contains(data, "&lt;script&gt;") {
		t.Fatalf("message not escaped: %q", data)
	}
	if !strings.Contains(data, "\n") || !strings.HasSuffix(data, "</li>") {
		t.Fatalf("multi-line fragment cut: %q", data)
	}
}

func TestShutdownEndsStreams(t *testing.T) {
	a := startApp(t, nil)
	s := openStream(t, a.URL, nil, "/events?format=json")
	waitJSON(t, s, "tabs", func(v tabsJSON) bool { return v.Tabs == 1 })
	start := time.Now()
	if err := a.stop(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		t.Fatal("stream still open after shutdown")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("shutdown took %v", d)
	}
}

// HTTP clients open spare connections that never carry a request; the
// server counts those as busy for 5 s, so one alone used to time out a
// shorter graceful shutdown (and failed a SIGTERM in CI).
func TestShutdownIgnoresUnusedConnections(t *testing.T) {
	a := startApp(t, nil, "-shutdown-timeout", "1s")
	conn, err := net.Dial("tcp", strings.TrimPrefix(a.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Once the server has accepted it, the connection is tracked.
	if _, err := http.Get(a.URL + "/healthz"); err != nil {
		t.Fatal(err)
	}
	if err := a.stop(); err != nil {
		t.Fatalf("shutdown with an unused connection open: %v", err)
	}
}
