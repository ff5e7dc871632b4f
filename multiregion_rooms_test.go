package main

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"globalpresence/internal/cluster"
)

// waitRoomsEverywhere waits until every app answers want for /api/rooms
// (on loopback: no key needed) and returns how long that took.
func waitRoomsEverywhere(t *testing.T, apps []*cluster.App, want string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for _, a := range apps {
		for {
			code, body, got := roomsAt(t, a)
			if code == http.StatusOK && got == want {
				break
			}
			if time.Since(start) > within {
				t.Fatalf("%s answers %d %s (%q) after %v, want %q", a.Name, code, body, got, within, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return time.Since(start)
}

func roomsAt(t *testing.T, a *cluster.App) (int, string, string) {
	var r roomsJSON
	code, body := apiGet(t, a.URL()+"/api/rooms?prefix=r/", "")
	_ = json.Unmarshal([]byte(body), &r)
	return code, body, r.String()
}

// The rooms API is global: every instance of every region answers the
// same list, a user with tabs on two instances (and regions) counts once,
// a killed instance's users leave every answer within 10 s, and after the
// primary restarts empty the instances write their memberships back: a new
// instance, which knows only what the store holds, answers the whole list.
func TestMultiRegionRoomsAPI(t *testing.T) {
	c := startCluster(t)
	ams, iad, syd := c.Region("ams"), c.Region("iad"), c.Region("syd")
	u, v, w := newBrowserClient(t), newBrowserClient(t), newBrowserClient(t)
	for _, b := range []*http.Client{u, v, w} {
		visit(t, &app{URL: ams.Apps[0].URL()}, b) // one identity each, on every instance
	}
	openStream(t, ams.Apps[0].URL(), u, "/rooms/r/a/events?format=json")
	openStream(t, iad.Apps[0].URL(), u, "/rooms/r/a/events?format=json")
	openStream(t, ams.Apps[1].URL(), v, "/rooms/r/a/events?format=json")
	openStream(t, ams.Apps[1].URL(), v, "/rooms/r/b/events?format=json")
	openStream(t, syd.Apps[0].URL(), w, "/rooms/r/b/events?format=json")
	openStream(t, ams.Apps[0].URL(), w, "/rooms/r/b/events?format=json")

	waitRoomsEverywhere(t, c.Apps(), "r/a 2 map[ams:2 iad:1]; r/b 2 map[ams:2 syd:1]; ", 10*time.Second)

	if err := ams.Apps[1].Kill(); err != nil {
		t.Fatal(err)
	}
	rest := []*cluster.App{ams.Apps[0], iad.Apps[0], syd.Apps[0]}
	after := "r/a 1 map[ams:1 iad:1]; r/b 1 map[ams:1 syd:1]; "
	took := waitRoomsEverywhere(t, rest, after, 10*time.Second)
	t.Logf("a killed instance's users left every answer %v after kill -9", took.Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.CrashNode(ctx, c.StoreNodes()[0], false); err != nil { // the primary, empty
		t.Fatal(err)
	}
	for _, a := range rest {
		waitReadyz(t, a.URL(), http.StatusOK, 20*time.Second)
	}
	waitRoomsEverywhere(t, rest, after, 5*time.Second)
	if err := ams.Apps[1].Start(); err != nil {
		t.Fatal(err)
	}
	if err := ams.Apps[1].WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	took = waitRoomsEverywhere(t, []*cluster.App{ams.Apps[1]}, after, 10*time.Second)
	t.Logf("a new instance read the whole list from the store %v after it was ready, the store having restarted empty", took.Round(time.Millisecond))
}
