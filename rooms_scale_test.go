package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"globalpresence/internal/redisnode"
)

// A room costs nothing once nobody watches it: when its last stream leaves,
// the broadcaster forgets it (gp_rooms back to 0), the store keeps nothing
// of it in memory (gp_store_rooms back to 0) and, with Redis, this instance
// is no longer subscribed to its channel. With both stores.
func TestRoomForgottenAfterLastStream(t *testing.T) {
	t.Run("memory", func(t *testing.T) { roomForgotten(t, startApp(t, nil), nil) })
	t.Run("redis", func(t *testing.T) {
		node := redisnode.MustStart(t, redisnode.Options{})
		roomForgotten(t, startApp(t, map[string]string{"REDIS_URL": node.URL(), "FLY_REGION": "ams"}, "-room-idle", "300ms"), node)
	})
}

func roomForgotten(t *testing.T, a *app, node *redisnode.Node) {
	waitReadyz(t, a.URL, http.StatusOK, 10*time.Second)
	rooms := []string{"shop/a", "shop/b"}
	var streams []*stream
	for _, room := range rooms {
		for range 2 {
			s := openStream(t, a.URL, nil, "/rooms/"+room+"/events?format=json")
			s.waitFor(t, "tabs", func(string) bool { return true })
			streams = append(streams, s)
		}
	}
	subscribers := func(room string) string {
		n, err := node.Do("PUBSUB", "NUMSUB", "gp:room:"+room)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimPrefix(n, "gp:room:"+room+"\n")
	}
	if got := metricValue(t, a.URL, "gp_rooms"); got != "2" {
		t.Fatalf("gp_rooms = %s with streams in 2 rooms", got)
	}
	if node != nil && subscribers(rooms[0]) != "1" {
		t.Fatalf("%s has %s subscribers with streams in it, want 1", rooms[0], subscribers(rooms[0]))
	}
	for _, s := range streams {
		s.close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		held, kept := metricValue(t, a.URL, "gp_rooms"), metricValue(t, a.URL, "gp_store_rooms")
		subs := "00" // room channel subscribers, with Redis
		if node != nil {
			subs = subscribers(rooms[0]) + subscribers(rooms[1])
		}
		if held == "0" && kept == "0" && subs == "00" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s after every stream left: gp_rooms %s, gp_store_rooms %s, room channel subscribers %s", held, kept, subs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// metricValue reads one unlabelled metric from /metrics ("" if absent).
func metricValue(t testing.TB, base, name string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

// Large rooms keep working per room: beside a small room, a large one sends
// a count and a sample while the small one lists everyone, churn in the
// large one reaches its clients coalesced and the small one's not at all.
// With both stores.
func TestLargeAndSmallRoomsSideBySide(t *testing.T) {
	args := []string{"-large-room", "3", "-coalesce", "200ms", "-streams-per-client", "5000", "-room-idle", "300ms"}
	t.Run("memory", func(t *testing.T) { largeAndSmall(t, startApp(t, nil, args...)) })
	t.Run("redis", func(t *testing.T) {
		node := redisnode.MustStart(t, redisnode.Options{})
		largeAndSmall(t, startApp(t, map[string]string{"REDIS_URL": node.URL(), "FLY_REGION": "ams"}, args...))
	})
}

func largeAndSmall(t *testing.T, a *app) {
	waitReadyz(t, a.URL, http.StatusOK, 10*time.Second)
	big, small := "/rooms/shop/big", "/rooms/shop/small"
	bigJS, bigHTML := openStream(t, a.URL, nil, big+"/events?format=json"), openStream(t, a.URL, nil, big+"/events")
	for range 3 {
		openStream(t, a.URL, nil, big+"/events?format=json").waitFor(t, "tabs", func(string) bool { return true })
	}
	smallJS := openStream(t, a.URL, nil, small+"/events?format=json")
	openStream(t, a.URL, nil, small+"/events?format=json").waitFor(t, "tabs", func(string) bool { return true })

	if r := waitJSON(t, bigJS, "regions", func(v regionsJSON) bool { return v.Regions[0].Count == 5 }); len(r.Regions[0].Users) != 0 {
		t.Fatalf("the large room's JSON stream lists its users: %+v", r.Regions[0])
	}
	bigHTML.waitFor(t, "regions", func(html string) bool {
		return strings.Contains(html, "5 users") && strings.Count(html, `class="avatar `) == 3 && strings.Contains(html, "and 2 more")
	})
	if r := waitJSON(t, smallJS, "regions", func(v regionsJSON) bool { return v.Regions[0].Count == 2 }); len(r.Regions[0].Users) != 2 {
		t.Fatalf("the small room's JSON stream does not list its 2 users: %+v", r.Regions[0])
	}
	drain := func(s *stream) {
		for len(s.events) > 0 {
			<-s.events
		}
	}
	drain(bigJS)
	drain(smallJS)

	// Churn in the large room only.
	const churn = 2 * time.Second
	churnStreams(t, a.URL, big+"/events?format=json", 6, churn).Wait()
	time.Sleep(500 * time.Millisecond) // past the last held update
	// Presence updates each client got, and the last one's count.
	updates := func(s *stream) (n, last int) {
		for len(s.events) > 0 {
			if ev := <-s.events; string(ev.Event) == "regions" {
				var r regionsJSON
				if err := json.Unmarshal(ev.Data, &r); err != nil {
					t.Fatal(err)
				}
				n, last = n+1, r.Regions[0].Count
			}
		}
		return n, last
	}
	bigUpdates, bigLast := updates(bigJS)
	smallUpdates, _ := updates(smallJS)
	t.Logf("during %v of churn in the large room: %d presence updates there, %d in the small room", churn, bigUpdates, smallUpdates)
	// 2 s at one update per 200 ms is 10, plus the settling; allow the edges.
	if bigUpdates == 0 || bigUpdates > 14 || bigLast != 5 {
		t.Errorf("%d presence updates in the large room in %v of churn with a 200ms interval, the last counting %d (want 5)", bigUpdates, churn, bigLast)
	}
	if smallUpdates != 0 {
		t.Errorf("the small room got %d presence updates from churn in the large room", smallUpdates)
	}
	var st regionsJSON
	getJSON(t, a.URL+"/api/rooms/shop/small", &st)
	if len(st.Regions) != 1 || st.Regions[0].Count != 2 || len(st.Regions[0].Users) != 2 {
		t.Errorf("/api/rooms/shop/small after churn next door: %+v", st.Regions)
	}
}
