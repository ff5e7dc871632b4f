package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// Presence churn reaches each client coalesced: at most one presence update
// per -coalesce interval, however many tabs open and close.
func TestPresenceChurnIsCoalesced(t *testing.T) {
	// Closed streams are counted until the hub notices them (within a second),
	// so the per-address cap must allow for a second of churn.
	a := startApp(t, nil, "-coalesce", "200ms", "-streams-per-client", "5000")
	watcher := openStream(t, a.URL, nil, "/events?format=json")
	watcher.waitFor(t, "tabs", func(string) bool { return true })

	const churn = 2 * time.Second
	wg := churnStreams(t, a.URL, "/events?format=json", 8, churn)
	var updates int
	var last regionsJSON
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for counting := true; counting; {
		select {
		case ev := <-watcher.events:
			if string(ev.Event) == "regions" {
				updates++
				if err := json.Unmarshal(ev.Data, &last); err != nil {
					t.Fatalf("regions event is not JSON: %v: %q", err, ev.Data)
				}
			}
		case <-done:
			counting = false
		}
	}
	t.Logf("%d presence updates to one client in %v of churn", updates, churn)
	// 2 s at one update per 200 ms is 10; allow the edges and a slow machine.
	if updates > 14 {
		t.Fatalf("%d presence updates in %v of churn with a 200ms interval", updates, churn)
	}
	if updates == 0 {
		t.Fatal("churn produced no presence update at all")
	}
	// And the churn settles to the truth: the last update shown, once none
	// has come for a second, has only the watcher. (It may have come
	// before the workers were done, all between streams on a loaded
	// machine: an update that changes nothing is not sent again.)
	deadline := time.After(10 * time.Second)
	for settled := false; !settled; {
		select {
		case ev := <-watcher.events:
			if string(ev.Event) == "regions" {
				if err := json.Unmarshal(ev.Data, &last); err != nil {
					t.Fatalf("regions event is not JSON: %v: %q", err, ev.Data)
				}
			}
		case <-time.After(time.Second):
			settled = true
		case <-deadline:
			t.Fatal("presence updates still coming 10 s after the churn")
		}
	}
	if len(last.Regions) != 1 || last.Regions[0].Count != 1 {
		t.Fatalf("after the churn the watcher was last shown %+v, want only itself", last.Regions)
	}
}

// churnStreams opens streams to path and closes each once it is attached,
// from workers goroutines, for d.
func churnStreams(t *testing.T, base, path string, workers int, d time.Duration) *sync.WaitGroup {
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for time.Now().Before(stop) {
				s := openStream(t, base, nil, path)
				s.waitFor(t, "tabs", func(string) bool { return true })
				s.close()
			}
		})
	}
	return &wg
}

func TestEdgeRegionFromFlyHeader(t *testing.T) {
	a := startApp(t, map[string]string{"FLY_REGION": "ams"})
	send := func(region string) string {
		req, _ := http.NewRequest(http.MethodPost, a.URL+"/hi", strings.NewReader(url.Values{}.Encode()))
		req.Header.Set("Fly-Region", region)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := send("syd"); !strings.Contains(got, `"text":"Hi from Sydney 👋"`) || !strings.Contains(got, `"from":"syd"`) || !strings.Contains(got, `"region":"ams"`) {
		t.Fatalf("from syd: %s", got)
	}
	// Off Fly the header is the client's: unknown codes are not believed.
	if got := send("<b>x"); !strings.Contains(got, `"text":"Hi from Amsterdam 👋"`) {
		t.Fatalf("unknown edge: %s", got)
	}
}

func TestListenAddress(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	if got := defaultAddr(env(nil)); got != ":8080" {
		t.Fatalf("default %q", got)
	}
	if got := defaultAddr(env(map[string]string{"PORT": "9999"})); got != ":9999" {
		t.Fatalf("PORT: %q", got)
	}
}

// A quiet room's first join is sent at once, not held for the coalescing
// interval.
func TestQuietRoomSeesAJoinAtOnce(t *testing.T) {
	a := startApp(t, nil, "-coalesce", "250ms")
	watcher := openStream(t, a.URL, nil, "/events?format=json")
	waitJSON(t, watcher, "regions", func(r regionsJSON) bool { return r.Regions[0].Count == 1 })
	time.Sleep(300 * time.Millisecond) // let the room go quiet
	start := time.Now()
	openStream(t, a.URL, nil, "/events?format=json")
	waitJSON(t, watcher, "regions", func(r regionsJSON) bool { return r.Regions[0].Count == 2 })
	took := time.Since(start)
	t.Logf("a join in a quiet room reached another client in %v", took)
	if took > 300*time.Millisecond {
		t.Fatalf("a join in a quiet room took %v to arrive, want ≤ 300 ms", took)
	}
}

// Above -large-room users in a region, the page shows a sample of avatars
// and the JSON stream a count, so an update's size stops growing with the
// room; /api/state still lists everyone.
func TestLargeRoomSendsASample(t *testing.T) {
	a := startApp(t, nil, "-large-room", "3")
	watcher := openStream(t, a.URL, nil, "/events")
	js := openStream(t, a.URL, nil, "/events?format=json")
	for range 3 {
		openStream(t, a.URL, nil, "/events?format=json").waitFor(t, "tabs", func(string) bool { return true })
	}
	var r regionsJSON
	waitJSON(t, js, "regions", func(v regionsJSON) bool { r = v; return v.Regions[0].Count == 5 })
	if len(r.Regions[0].Users) != 0 {
		t.Fatalf("the JSON stream lists users in a large room: %+v", r.Regions[0])
	}
	watcher.waitFor(t, "regions", func(html string) bool {
		return strings.Contains(html, "5 users") && strings.Count(html, `class="avatar `) == 3 && strings.Contains(html, "and 2 more")
	})
	var state regionsJSON
	getJSON(t, a.URL+"/api/state", &state)
	if len(state.Regions[0].Users) != 5 {
		t.Fatalf("/api/state lists %d users, want all 5", len(state.Regions[0].Users))
	}
}
