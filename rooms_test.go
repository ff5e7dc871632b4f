package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"globalpresence/internal/redisnode"
	"globalpresence/presence"
)

// Every page is a room under /rooms/{room}, with everything home has, and
// rooms are isolated: nothing flipped, posted or joined in one shows in
// another. With the embedded store and with Redis.
func TestRoomsByURL(t *testing.T) {
	t.Run("memory", func(t *testing.T) { roomsByURL(t, startApp(t, nil)) })
	t.Run("redis", func(t *testing.T) {
		node := redisnode.MustStart(t, redisnode.Options{})
		roomsByURL(t, startApp(t, map[string]string{"REDIS_URL": node.URL(), "FLY_REGION": "ams"}))
	})
}

func roomsByURL(t *testing.T, a *app) {
	const room = "shop/product-1.v2"
	base := a.URL + "/rooms/" + room
	waitReadyz(t, a.URL, http.StatusOK, 10*time.Second)

	// The page links its own room's stream and actions.
	resp, err := http.Get(base)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`sse-connect="/rooms/` + room + `/events?colour=`,
		`hx-post="/rooms/` + room + `/lightbulb"`, `hx-post="/rooms/` + room + `/hi"`} {
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), want) {
			t.Fatalf("GET /rooms/%s: %d, page lacks %s", room, resp.StatusCode, want)
		}
	}

	home := openStream(t, a.URL, nil, "/events?format=json")
	shop := openStream(t, a.URL, nil, "/rooms/"+room+"/events?format=json")
	for _, s := range []*stream{home, shop} {
		s.waitFor(t, "tabs", func(string) bool { return true })
	}
	code, body := post(t, http.DefaultClient, base+"/lightbulb", nil)
	if code != http.StatusOK || !strings.Contains(body, `"on":true`) {
		t.Fatalf("flip in the room: %d %s", code, body)
	}
	if code, body = post(t, http.DefaultClient, base+"/hi", url.Values{"text": {"in the shop"}}); code != http.StatusCreated {
		t.Fatalf("hi in the room: %d %s", code, body)
	}
	shop.waitFor(t, "light", contains(`"on":true`))
	shop.waitFor(t, "messages", contains("in the shop"))

	// Home saw none of it: a marker posted at home arrives with nothing
	// of the room's before it.
	if code, _ = post(t, http.DefaultClient, a.URL+"/hi", url.Values{"text": {"at home"}}); code != http.StatusCreated {
		t.Fatalf("hi at home: %d", code)
	}
	for {
		ev := <-home.events
		data := string(ev.Data)
		if strings.Contains(data, "in the shop") || (string(ev.Event) == "light" && strings.Contains(data, `"on":true`)) {
			t.Fatalf("home's stream got the room's %s: %s", ev.Event, data)
		}
		if strings.Contains(data, "at home") {
			break
		}
	}

	var st struct {
		Room      string    `json:"room"`
		Lightbulb lightJSON `json:"lightbulb"`
		Messages  []struct{ Text string }
		regionsJSON
	}
	getJSON(t, a.URL+"/api/rooms/"+room, &st)
	if st.Room != room || !st.Lightbulb.On || len(st.Messages) != 1 || st.Messages[0].Text != "in the shop" {
		t.Fatalf("/api/rooms/%s: %+v", room, st)
	}
	getJSON(t, a.URL+"/api/state", &st)
	if st.Room != "home" || st.Lightbulb.On || len(st.Messages) != 1 || st.Messages[0].Text != "at home" {
		t.Fatalf("/api/state after the room's changes: %+v", st)
	}
	if len(st.Regions) != 1 || st.Regions[0].Count != 1 {
		t.Fatalf("home counts the room's viewer: %+v", st.Regions)
	}

	// Bad names are refused with a message.
	for _, bad := range []string{"a//b", "a/../b", "./a", "a/", "a:b", "a%20b", "é", strings.Repeat("x", 129)} {
		for _, u := range []string{"/rooms/" + bad + "/events", "/api/rooms/" + bad} {
			req, _ := http.NewRequest(http.MethodGet, a.URL+u, nil)
			req.URL.Opaque = "//" + req.URL.Host + u // as sent, uncleaned
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var e struct{ Error string }
			_ = json.NewDecoder(resp.Body).Decode(&e)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(e.Error, "room name") {
				t.Errorf("GET %s: %d %q, want 400 with a message", u, resp.StatusCode, e.Error)
			}
		}
	}
	if code, _ = post(t, http.DefaultClient, a.URL+"/rooms/"+room+"/nothing", nil); code != http.StatusNotFound {
		t.Errorf("POST to no action: %d, want 404", code)
	}
}

// Users are told apart by their whole identity, not by the 8 digits shown:
// two browsers whose shown IDs collide are two users, each with their own
// tab count.
func TestUsersGroupedByFullIdentity(t *testing.T) {
	seen := map[string]string{}
	var a, b string
	for a == "" {
		s := presence.NewSecret()
		short := presence.IDFromSecret(s).Short()
		if other, ok := seen[short]; ok {
			a, b = other, s
		}
		seen[short] = s
	}
	app := startApp(t, nil)
	u, _ := url.Parse(app.URL)
	var streams []*stream
	for _, secret := range []string{a, b} {
		c := newBrowserClient(t)
		c.Jar.SetCookies(u, []*http.Cookie{{Name: "gp_secret", Value: secret}})
		streams = append(streams, openStream(t, app.URL, c, "/events?format=json"))
	}
	for _, s := range streams {
		waitJSON(t, s, "tabs", func(v tabsJSON) bool { return v.Tabs == 1 })
	}
	// Presence is served as last rendered: it may lag a coalescing interval.
	var st regionsJSON
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		getJSON(t, app.URL+"/api/state", &st)
		if len(st.Regions) != 1 || st.Regions[0].Count != 1 || time.Now().After(deadline) {
			break
		}
	}
	if len(st.Regions) != 1 || len(st.Regions[0].Users) != 2 || st.Regions[0].Count != 2 ||
		st.Regions[0].Users[0].ID != st.Regions[0].Users[1].ID || st.Regions[0].Users[0].Tabs != 1 {
		t.Fatalf("two users whose shown IDs collide: %+v", st.Regions)
	}
	// And neither stream ever said 2 tabs.
	for _, s := range streams {
		for len(s.events) > 0 {
			if ev := <-s.events; string(ev.Event) == "tabs" && strings.Contains(string(ev.Data), `"tabs":2`) {
				t.Fatalf("a user was counted the other's tab: %s", ev.Data)
			}
		}
	}
}
