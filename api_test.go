package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"globalpresence/internal/redisnode"
	"globalpresence/presence"
)

// apiGet GETs an integration API URL with the key (none if "").
func apiGet(t *testing.T, u, key string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type roomsJSON struct {
	Rooms []struct {
		Room    string         `json:"room"`
		Viewers int            `json:"viewers"`
		Regions map[string]int `json:"regions"`
	} `json:"rooms"`
}

// String is the list as the tests compare it: room viewers regions, ...
func (r roomsJSON) String() string {
	var b strings.Builder
	for _, x := range r.Rooms {
		fmt.Fprintf(&b, "%s %d %v; ", x.Room, x.Viewers, x.Regions)
	}
	return b.String()
}

// waitAPI polls an API URL until its answer, decoded into a fresh T and
// printed, is want.
func waitAPI[T any](t *testing.T, u, key, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := apiGet(t, u, key)
		var v T
		err := json.Unmarshal([]byte(body), &v)
		got := fmt.Sprint(v)
		if code == http.StatusOK && err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d %s (%q), want %q", u, code, body, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The rooms API, with the embedded store and with Redis: occupied rooms most
// viewers first with distinct users per region, prefix and limit, a user's
// rooms; on loopback without a key.
func TestRoomsAPI(t *testing.T) {
	args := []string{"-streams-per-client", "1000", "-conns-per-client", "1000"}
	env := map[string]string{"FLY_REGION": "ams"}
	t.Run("memory", func(t *testing.T) { roomsAPI(t, startApp(t, env, args...)) })
	t.Run("redis", func(t *testing.T) {
		node := redisnode.MustStart(t, redisnode.Options{})
		roomsAPI(t, startApp(t, map[string]string{"REDIS_URL": node.URL(), "FLY_REGION": "ams"}, args...))
	})
}

// fullID is the whole user ID of a browser (pages show only its start).
func fullID(t *testing.T, a *app, browser *http.Client) string {
	u, _ := url.Parse(a.URL)
	for _, c := range browser.Jar.Cookies(u) {
		if c.Name == "gp_secret" {
			return string(presence.IDFromSecret(c.Value))
		}
	}
	t.Fatal("no identity cookie")
	return ""
}

func roomsAPI(t *testing.T, a *app) {
	waitReadyz(t, a.URL, http.StatusOK, 10*time.Second)
	browsers := make([]*http.Client, 4)
	ids := make([]string, len(browsers))
	for i := range browsers {
		browsers[i] = newBrowserClient(t)
		visit(t, a, browsers[i])
		ids[i] = fullID(t, a, browsers[i])
	}
	open := func(user int, room string) *stream {
		return openStream(t, a.URL, browsers[user], "/rooms/"+room+"/events?format=json")
	}
	open(0, "shop/1")
	open(0, "shop/1") // a second tab: one viewer
	open(1, "shop/1")
	closing := open(2, "shop/1")
	open(0, "blog/x")
	open(3, "blog/x")
	open(3, "shop/2")
	rooms := a.URL + "/api/rooms"
	waitAPI[roomsJSON](t, rooms, "", "shop/1 3 map[ams:3]; blog/x 2 map[ams:2]; shop/2 1 map[ams:1]; ")
	waitAPI[roomsJSON](t, rooms+"?prefix=shop/", "", "shop/1 3 map[ams:3]; shop/2 1 map[ams:1]; ")
	waitAPI[roomsJSON](t, rooms+"?limit=1", "", "shop/1 3 map[ams:3]; ")
	closing.close()
	waitAPI[roomsJSON](t, rooms+"?limit=2", "", "blog/x 2 map[ams:2]; shop/1 2 map[ams:2]; ") // a tie: by name
	waitAPI[roomsJSON](t, rooms+"?prefix=nothing", "", "")
	if _, body := apiGet(t, rooms+"?prefix=nothing", ""); !strings.Contains(body, `"rooms":[]`) {
		t.Fatalf("no rooms: %s, want an empty list", body)
	}
	for _, bad := range []string{"limit=0", "limit=1001", "limit=ten", "limit=", "prefix=a:b", "prefix=" + strings.Repeat("a", 129)} {
		code, body := apiGet(t, rooms+"?"+bad, "")
		if bad == "limit=" { // empty: the default
			if code != http.StatusOK {
				t.Fatalf("?%s: %d %s", bad, code, body)
			}
			continue
		}
		if code != http.StatusBadRequest || !strings.Contains(body, `"error"`) {
			t.Fatalf("?%s: %d %s, want 400 with a message", bad, code, body)
		}
	}

	// The default limit is 100, at most 1,000.
	for i := range 101 {
		open(1, fmt.Sprint("many/", i))
	}
	count := func(u string) int {
		var r roomsJSON
		_, body := apiGet(t, u, "")
		_ = json.Unmarshal([]byte(body), &r)
		return len(r.Rooms)
	}
	deadline := time.Now().Add(10 * time.Second)
	for count(rooms+"?prefix=many/&limit=1000") != 101 {
		if time.Now().After(deadline) {
			t.Fatalf("%d rooms of 101", count(rooms+"?prefix=many/&limit=1000"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := count(rooms + "?prefix=many/"); n != 100 {
		t.Fatalf("%d rooms by default, want 100", n)
	}

	type userJSON struct {
		User  string   `json:"user"`
		Rooms []string `json:"rooms"`
	}
	waitAPI[userJSON](t, a.URL+"/api/users/"+ids[0]+"/rooms", "", "{"+ids[0]+" [blog/x shop/1]}")
	waitAPI[userJSON](t, a.URL+"/api/users/"+strings.ToLower(ids[3])+"/rooms", "", "{"+ids[3]+" [blog/x shop/2]}")
	waitAPI[userJSON](t, a.URL+"/api/users/"+ids[2]+"/rooms", "", "{"+ids[2]+" []}")
	for _, bad := range []string{ids[0][:8], ids[0] + "0", strings.Repeat("G", 32)} {
		if code, body := apiGet(t, a.URL+"/api/users/"+bad+"/rooms", ""); code != http.StatusBadRequest || !strings.Contains(body, `"error"`) {
			t.Fatalf("user %q: %d %s, want 400 with a message", bad, code, body)
		}
	}
}

// With PRESENCE_API_KEY set the API needs it, even on loopback; a room's
// own state stays public.
func TestRoomsAPIKey(t *testing.T) {
	const key = "k3y-for-the-rooms-api"
	a := startApp(t, map[string]string{"PRESENCE_API_KEY": key})
	for _, u := range []string{a.URL + "/api/rooms", a.URL + "/api/users/" + strings.Repeat("A", 32) + "/rooms"} {
		for _, try := range []string{"", "wrong", key + "x"} {
			if code, body := apiGet(t, u, try); code != http.StatusUnauthorized || !strings.Contains(body, `"error"`) {
				t.Fatalf("GET %s with key %q: %d %s, want 401 with a message", u, try, code, body)
			}
		}
		if code, body := apiGet(t, u, key); code != http.StatusOK {
			t.Fatalf("GET %s with the key: %d %s", u, code, body)
		}
	}
	if code, body := apiGet(t, a.URL+"/api/rooms/home", ""); code != http.StatusOK {
		t.Fatalf("a room's state without a key: %d %s, want 200", code, body)
	}
}
