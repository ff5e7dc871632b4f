package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"globalpresence/internal/cluster"
)

// The multi-region tests run the real binary as separate processes: one
// Redis primary, a replica per region, app instances per region.

func TestMain(m *testing.M) {
	code := m.Run()
	cluster.RemoveTestBinary()
	os.Exit(code)
}

// startCluster runs ams (two instances), iad and syd, with limits raised:
// every test client shares 127.0.0.1.
func startCluster(t *testing.T) *cluster.Cluster {
	t.Helper()
	return startClusterWith(t, nil, nil)
}

// startClusterWith is startCluster with extra flags and KEY=VALUE env for
// every instance.
func startClusterWith(t *testing.T, args, env []string) *cluster.Cluster {
	t.Helper()
	bin := cluster.TestBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Config{
		Binary:    bin,
		Regions:   []string{"ams", "iad", "syd"},
		Instances: map[string]int{"ams": 2},
		Dir:       t.TempDir(),
		AppArgs: append([]string{"-coalesce", "50ms", "-hi-rate", "1000", "-hi-burst", "1000",
			"-lightbulb-rate", "1000", "-lightbulb-burst", "1000", "-streams-per-client", "1000", "-conns-per-client", "1000"}, args...),
		AppEnv: env,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, a := range c.Apps() {
				t.Logf("--- log of %s:\n%s", a.Name, a.Log())
			}
		}
		if err := c.Stop(); err != nil {
			t.Errorf("stopping the cluster: %v", err)
		}
	})
	return c
}

type appState struct {
	Lightbulb lightJSON `json:"lightbulb"`
	regionsJSON
	Messages []struct {
		ID, Text, User string
	} `json:"messages"`
}

func stateOf(t *testing.T, u string) appState {
	t.Helper()
	var s appState
	getJSON(t, u+"/api/state", &s)
	return s
}

// presenceKey is what every region must agree on: who is where with how
// many tabs (not which card is "here", nor the pings).
func (s appState) presenceKey() string {
	var b strings.Builder
	for _, r := range s.Regions {
		if r.Count == 0 {
			continue
		}
		fmt.Fprintf(&b, "%s:", r.Region)
		for _, u := range r.Users {
			fmt.Fprintf(&b, "%s*%d,", u.ID, u.Tabs)
		}
		b.WriteString(";")
	}
	return b.String()
}

func (s appState) feedKey() string {
	ids := make([]string, len(s.Messages))
	for i, m := range s.Messages {
		ids[i] = m.ID
	}
	return strings.Join(ids, ",")
}

// converge polls every app until cond holds for all of them and they agree
// on key, and returns how long that took.
func converge(t *testing.T, apps []*cluster.App, within time.Duration, what string, key func(appState) string, cond func(appState) bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		var keys []string
		ok := true
		for _, a := range apps {
			s := stateOf(t, a.URL())
			ok = ok && cond(s)
			keys = append(keys, key(s))
		}
		if ok && len(slices.Compact(slices.Clone(keys))) == 1 {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: no convergence within %v:\n%s", what, within, strings.Join(keys, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func postTo(t *testing.T, u, path string, form url.Values) int {
	t.Helper()
	code, _ := post(t, &http.Client{Timeout: 10 * time.Second}, u+path, form)
	return code
}

func lightKey(s appState) string {
	return fmt.Sprintf("on:%v flips:%d", s.Lightbulb.On, s.Lightbulb.Flips)
}

// A flip in one region reaches streams in the others; concurrent flips and
// messages from every region converge to one state and one feed everywhere
// (flaws 7 and 8 of the original).
func TestMultiRegionConvergence(t *testing.T) {
	c := startCluster(t)
	apps := c.Apps()
	iad := openStream(t, c.Region("iad").Apps[0].URL(), nil, "/events?format=json")
	syd := openStream(t, c.Region("syd").Apps[0].URL(), nil, "/events?format=json")
	for _, s := range []*stream{iad, syd} {
		waitJSON(t, s, "light", func(l lightJSON) bool { return !l.On })
	}
	if code := postTo(t, apps[0].URL(), "/lightbulb", url.Values{"state": {"on"}}); code != http.StatusOK {
		t.Fatalf("set on: %d", code)
	}
	for _, s := range []*stream{iad, syd} {
		waitJSON(t, s, "light", func(l lightJSON) bool { return l.On && l.Region == "ams" })
	}

	// 25 flips through each of the 4 instances, all at once: all 100 are
	// counted, once, everywhere, and leave the light on as it was set (the
	// parity alone would pass if every flip were lost). Each answer counts
	// its own flip and shows the state the flips counted so far give.
	converge(t, apps, 5*time.Second, "set on (a set is not a flip)", lightKey, func(s appState) bool {
		return s.Lightbulb.On && s.Lightbulb.Flips == 0
	})
	var wg sync.WaitGroup
	for _, a := range apps {
		for range 25 {
			wg.Go(func() {
				code, body := post(t, &http.Client{Timeout: 10 * time.Second}, a.URL()+"/lightbulb", nil)
				var l lightJSON
				if err := json.Unmarshal([]byte(body), &l); code != http.StatusOK || err != nil {
					t.Errorf("flip on %s: %d %s", a.Name, code, body)
				} else if l.Flips < 1 || l.Flips > 100 || l.On != (l.Flips%2 == 0) {
					t.Errorf("flip on %s answered %s", a.Name, body)
				}
			})
		}
	}
	wg.Wait()
	took := converge(t, apps, 5*time.Second, "100 concurrent flips", lightKey, func(s appState) bool {
		return s.Lightbulb.Flips == 100 && s.Lightbulb.On
	})
	t.Logf("100 concurrent flips converged everywhere in %v", took)

	// 3 messages through each instance at once: every region shows the same
	// newest 10, in the same order, each once.
	sent := map[string]bool{}
	for i, a := range apps {
		for k := range 3 {
			text := fmt.Sprintf("from %s #%d", a.Name, k)
			sent[text] = true
			wg.Go(func() {
				if code := postTo(t, apps[i].URL(), "/hi", url.Values{"text": {text}}); code != http.StatusCreated {
					t.Errorf("hi on %s: %d", a.Name, code)
				}
			})
		}
	}
	wg.Wait()
	converge(t, apps, 5*time.Second, "12 concurrent messages", appState.feedKey, func(s appState) bool {
		seen := map[string]bool{}
		for _, m := range s.Messages {
			if seen[m.ID] || !sent[m.Text] {
				return false
			}
			seen[m.ID] = true
		}
		return len(s.Messages) == 10
	})

	// Each instance measured how long every region's changes took to
	// arrive: on the page, in /api/state, and in /metrics.
	resp, err := http.Get(c.Region("syd").Apps[0].URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, region := range []string{"ams", "iad", "syd"} {
		if !strings.Contains(string(b), `gp_propagation_seconds_count{region="`+region+`"}`) {
			t.Errorf("syd's /metrics has no propagation delays from %s", region)
		}
	}
	var st struct {
		Latency []struct {
			Region  string  `json:"region"`
			P50Ms   float64 `json:"p50_ms"`
			Samples int     `json:"samples"`
		} `json:"latency"`
	}
	// /api/state lists the other regions: syd's own figure is its round
	// trip through its own store, not a delay from elsewhere.
	getJSON(t, c.Region("syd").Apps[0].URL()+"/api/state", &st)
	if len(st.Latency) != 2 || st.Latency[0].Region != "ams" || st.Latency[1].Region != "iad" {
		t.Fatalf("syd's /api/state latency: %+v, want ams and iad", st.Latency)
	}
	t.Logf("propagation to syd: %+v", st.Latency)
}

// Flaw 6 of the original: with two instances in a region, every change
// reached clients twice. Here one change is one event on a stream and one
// entry in the feed.
func TestMultiRegionNoDuplicates(t *testing.T) {
	c := startCluster(t)
	ams := c.Region("ams")
	s := openStream(t, ams.Apps[0].URL(), nil, "/events?format=json")
	s.waitFor(t, "tabs", func(string) bool { return true }) // the last part of the snapshot
	postTo(t, ams.Apps[1].URL(), "/lightbulb", nil)
	postTo(t, ams.Apps[1].URL(), "/hi", url.Values{"text": {"only once"}})

	lights, messages := 0, 0
	quiet := time.After(1500 * time.Millisecond)
	for counting := true; counting; {
		select {
		case ev := <-s.events:
			switch string(ev.Event) {
			case "light":
				lights++
			case "messages":
				if strings.Count(string(ev.Data), "only once") != 1 {
					t.Fatalf("messages event lists the message %d times: %s", strings.Count(string(ev.Data), "only once"), ev.Data)
				}
				messages++
			}
		case <-quiet:
			counting = false
		}
	}
	if lights != 1 || messages != 1 {
		t.Fatalf("one flip and one message gave %d light and %d messages events", lights, messages)
	}
}

func tabsWhere(s appState, id string) map[string]int {
	out := map[string]int{}
	for _, r := range s.Regions {
		for _, u := range r.Users {
			if u.ID == id {
				out[r.Region] += u.Tabs
			}
		}
	}
	return out
}

// Presence is the same everywhere and exact across regions (flaw 9); a
// killed instance's users leave everywhere within 10 s and a terminated
// one's within 1 s (flaw 5).
func TestMultiRegionPresence(t *testing.T) {
	c := startCluster(t)
	ams, iad, syd := c.Region("ams"), c.Region("iad"), c.Region("syd")
	apps := c.Apps()

	u, v, w := newBrowserClient(t), newBrowserClient(t), newBrowserClient(t)
	uID := visit(t, &app{URL: ams.Apps[0].URL()}, u)
	vID := visit(t, &app{URL: ams.Apps[1].URL()}, v)
	wID := visit(t, &app{URL: iad.Apps[0].URL()}, w)
	u1 := openStream(t, ams.Apps[0].URL(), u, "/events?format=json")
	u2 := openStream(t, syd.Apps[0].URL(), u, "/events?format=json")
	vs := openStream(t, ams.Apps[1].URL(), v, "/events?format=json")
	openStream(t, iad.Apps[0].URL(), w, "/events?format=json")

	// U has one tab in ams and one in syd: 2 tabs, each counted once.
	for _, s := range []*stream{u1, u2} {
		waitJSON(t, s, "tabs", func(v tabsJSON) bool { return v.Tabs == 2 })
	}
	converge(t, apps, 5*time.Second, "presence", appState.presenceKey, func(s appState) bool {
		ut := tabsWhere(s, uID)
		return ut["ams"] == 1 && ut["syd"] == 1 && tabsWhere(s, vID)["ams"] == 1 && tabsWhere(s, wID)["iad"] == 1
	})

	// SIGSTOP the instance serving U's syd tab for 15 s: it is taken for
	// dead everywhere within 10 s; on SIGCONT it is back everywhere within
	// 2 s, with the right counts.
	stalled := syd.Apps[0]
	if err := syscall.Kill(stalled.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	others := []*cluster.App{ams.Apps[0], ams.Apps[1], iad.Apps[0]}
	converge(t, others, 10*time.Second, "a stalled instance taken for dead", appState.presenceKey, func(s appState) bool {
		return tabsWhere(s, uID)["syd"] == 0 && tabsWhere(s, uID)["ams"] == 1
	})
	t.Logf("a stalled instance's users left everywhere %v after SIGSTOP", time.Since(stopped).Round(time.Millisecond))
	time.Sleep(15*time.Second - time.Since(stopped))
	if err := syscall.Kill(stalled.PID(), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	took := converge(t, apps, 2*time.Second, "a stalled instance back", appState.presenceKey, func(s appState) bool {
		ut := tabsWhere(s, uID)
		return ut["ams"] == 1 && ut["syd"] == 1 && tabsWhere(s, vID)["ams"] == 1 && tabsWhere(s, wID)["iad"] == 1
	})
	t.Logf("a stalled instance's users were back everywhere %v after SIGCONT", took.Round(time.Millisecond))
	waitJSON(t, u1, "tabs", func(v tabsJSON) bool { return v.Tabs == 2 }) // it was 1 meanwhile

	// kill -9 the instance serving V: no goodbye, only the TTL.
	if err := ams.Apps[1].Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	select {
	case <-vs.done:
	case <-time.After(5 * time.Second):
		t.Fatal("V's stream survived its server")
	}
	rest := []*cluster.App{ams.Apps[0], iad.Apps[0], syd.Apps[0]}
	converge(t, rest, 10*time.Second, "after kill -9", appState.presenceKey, func(s appState) bool {
		return len(tabsWhere(s, vID)) == 0 && tabsWhere(s, uID)["ams"] == 1
	})
	t.Logf("users of a killed instance left everywhere %v after kill -9", time.Since(killed))

	// SIGTERM the instance serving W: it says goodbye.
	termed := time.Now()
	go func() { _ = iad.Apps[0].Term() }()
	took = converge(t, []*cluster.App{ams.Apps[0], syd.Apps[0]}, 5*time.Second, "after SIGTERM", appState.presenceKey, func(s appState) bool {
		return len(tabsWhere(s, wID)) == 0
	})
	t.Logf("users of a terminated instance left everywhere %v after SIGTERM", time.Since(termed))
	if took > time.Second {
		t.Fatalf("a terminated instance's users took %v to leave, want ≤ 1 s", took)
	}
}

func readyz(t *testing.T, u string) int {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(u + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func waitReadyz(t *testing.T, u string, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for readyz(t, u) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s/readyz never answered %d within %v", u, want, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Faults: the primary restarts, and a region's replica is cut off from it.
// Every region keeps serving, says it is not ready, then resubscribes,
// re-reads and converges within 5 s of recovery, with nothing stale and
// nothing twice (flaws 1 and 2).
func TestMultiRegionFaults(t *testing.T) {
	c := startCluster(t)
	apps := c.Apps()
	ams, syd := c.Region("ams"), c.Region("syd")
	streams := make([]*stream, len(apps))
	for i, a := range apps {
		streams[i] = openStream(t, a.URL(), nil, "/events?format=json")
	}
	postTo(t, apps[0].URL(), "/hi", url.Values{"text": {"before"}})
	converge(t, apps, 5*time.Second, "before faults", appState.feedKey, func(s appState) bool { return len(s.Messages) == 1 })

	// 1. The primary goes down and comes back (its data persists).
	if err := c.Primary.Stop(); err != nil {
		t.Fatal(err)
	}
	if code := postTo(t, apps[0].URL(), "/lightbulb", nil); code != http.StatusServiceUnavailable {
		t.Fatalf("a write with the primary down: %d, want 503", code)
	}
	for _, a := range apps {
		waitReadyz(t, a.URL(), http.StatusServiceUnavailable, 10*time.Second)
		resp, err := http.Get(a.URL() + "/")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s page with the primary down: %v %v", a.Name, resp, err)
		}
		resp.Body.Close()
	}
	during := openStream(t, syd.Apps[0].URL(), nil, "/events?format=json")
	during.waitFor(t, "messages", contains("before")) // the stream still starts with the last state
	if err := c.Primary.Restart(); err != nil {
		t.Fatal(err)
	}
	recovered := time.Now()
	for _, a := range apps {
		waitReadyz(t, a.URL(), http.StatusOK, 15*time.Second)
	}
	postTo(t, apps[0].URL(), "/lightbulb", url.Values{"state": {"on"}})
	postTo(t, apps[1].URL(), "/hi", url.Values{"text": {"after restart"}})
	converge(t, apps, 5*time.Second, "after the primary restarted", func(s appState) string { return lightKey(s) + s.feedKey() },
		func(s appState) bool { return s.Lightbulb.On && len(s.Messages) == 2 })
	for _, s := range streams {
		s.waitFor(t, "messages", contains("after restart"))
	}
	t.Logf("after the primary restarted, every region converged %v after its restart began answering", time.Since(recovered))

	// 2. Sydney's replica loses its link to the primary; writes go on in
	// Amsterdam and Sydney misses them, then catches up.
	syd.ReplLink.Cut()
	waitReadyz(t, syd.Apps[0].URL(), http.StatusServiceUnavailable, 10*time.Second)
	postTo(t, ams.Apps[0].URL(), "/lightbulb", url.Values{"state": {"off"}})
	// More messages than the feed shows (handlers' TestMessagesAfterAGap
	// checks that streams are shown each of them in passing).
	for i := range 14 {
		postTo(t, ams.Apps[0].URL(), "/hi", url.Values{"text": {fmt.Sprint("cut #", i)}})
	}
	postTo(t, ams.Apps[0].URL(), "/hi", url.Values{"text": {"during the cut"}})
	tab := openStream(t, ams.Apps[1].URL(), nil, "/events?format=json")
	tab.waitFor(t, "tabs", func(string) bool { return true })
	time.Sleep(300 * time.Millisecond)
	if s := stateOf(t, syd.Apps[0].URL()); slices.ContainsFunc(s.Messages, func(m struct{ ID, Text, User string }) bool { return m.Text == "during the cut" }) {
		t.Fatal("Sydney saw a write while cut off: the cut did not cut")
	}
	syd.ReplLink.Restore()
	took := converge(t, apps, 5*time.Second, "after the link came back",
		func(s appState) string { return lightKey(s) + s.feedKey() + s.presenceKey() },
		func(s appState) bool {
			return !s.Lightbulb.On && len(s.Messages) == 10 && s.Messages[0].Text == "during the cut"
		})
	t.Logf("Sydney converged %v after its replica's link was restored", took)
	waitReadyz(t, syd.Apps[0].URL(), http.StatusOK, 5*time.Second)
	var seen = map[string]bool{}
	for _, m := range stateOf(t, syd.Apps[0].URL()).Messages {
		if seen[m.ID] {
			t.Fatalf("message %s twice in Sydney's feed", m.ID)
		}
		seen[m.ID] = true
	}
	b, _ := json.Marshal(stateOf(t, syd.Apps[0].URL()).Regions)
	t.Logf("Sydney's regions after recovery: %s", b)
}
