package main

import (
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
