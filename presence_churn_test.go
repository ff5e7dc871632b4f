package main

import (
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
	a := startApp(t, nil, "-coalesce", "200ms", "-streams-per-client", "100")
	watcher := openStream(t, a.URL, nil, "/events?format=json")
	watcher.waitFor(t, "tabs", func(string) bool { return true })

	const churn = 2 * time.Second
	stop := time.Now().Add(churn)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for time.Now().Before(stop) {
				s := openStream(t, a.URL, nil, "/events?format=json")
				s.waitFor(t, "tabs", func(string) bool { return true })
				s.close()
			}
		})
	}
	var updates int
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for counting := true; counting; {
		select {
		case ev := <-watcher.events:
			if string(ev.Event) == "regions" {
				updates++
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
	// And the churn settles to the truth: only the watcher is left.
	waitJSON(t, watcher, "regions", func(r regionsJSON) bool { return r.Regions[0].Count == 1 })
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
