package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// Every bad request gets a 4xx with a message, and changes nothing.
func TestBadInputIsRejected(t *testing.T) {
	a := startApp(t, nil)
	var before map[string]any
	getJSON(t, a.URL+"/api/state", &before)

	form := "application/x-www-form-urlencoded"
	cases := []struct {
		name, method, path, ctype, body string
		want                            int
	}{
		{"unknown state", "POST", "/lightbulb", form, "state=dim", 400},
		{"state twice", "POST", "/lightbulb", form, "state=on&state=off", 400},
		{"unknown field", "POST", "/lightbulb", form, "colour=red", 400},
		{"oversized body", "POST", "/lightbulb", form, "state=" + strings.Repeat("x", 5000), 413},
		{"oversized chunked body", "POST", "/hi", form, "chunked:text=" + strings.Repeat("x", 5000), 413},
		{"text too long", "POST", "/hi", form, "text=" + strings.Repeat("é", 141), 400},
		{"text not UTF-8", "POST", "/hi", form, "text=%ff%fe", 400},
		{"text with control character", "POST", "/hi", form, "text=a%0Db", 400},
		{"colour not in palette", "POST", "/hi", form, "colour=red%22%3E", 400},
		{"malformed form", "POST", "/hi", form, "text=%zz", 400},
		{"JSON not an object of strings", "POST", "/hi", "application/json", `{"text": 5}`, 400},
		{"JSON truncated", "POST", "/lightbulb", "application/json", `{"state": "on"`, 400},
		{"two JSON objects", "POST", "/lightbulb", "application/json", `{"state":"on"} {}`, 400},
		{"JSON not UTF-8", "POST", "/hi", "application/json", "{\"text\":\"a\xffb\"}", 400},
		{"JSON lone high surrogate", "POST", "/hi", "application/json", `{"text":"\ud800"}`, 400},
		{"JSON lone low surrogate", "POST", "/hi", "application/json", `{"text":"a\udc00"}`, 400},
		{"JSON high surrogate then no low", "POST", "/hi", "application/json", `{"text":"\ud800\u0041"}`, 400},
		{"JSON key twice", "POST", "/lightbulb", "application/json", `{"state":"on","state":"off"}`, 400},
		{"JSON key twice, once escaped", "POST", "/hi", "application/json", `{"text":"a","t\u0065xt":"b"}`, 400},
		{"unsupported body type", "POST", "/lightbulb", "text/plain", "on", 415},
		{"body without a type", "POST", "/hi", "", "text=hi", 415},
		{"GET a POST route", "GET", "/lightbulb", "", "", 405},
		{"DELETE a POST route", "DELETE", "/hi", "", "", 405},
		{"POST the stream", "POST", "/events", "", "", 405},
		{"unknown stream format", "GET", "/events?format=xml", "", "", 400},
		{"stream colour not in palette", "GET", "/events?colour=%3Cb%3E", "", "", 400},
		{"unknown path", "GET", "/nope", "", "", 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if b, ok := strings.CutPrefix(tc.body, "chunked:"); ok {
				body = io.MultiReader(strings.NewReader(b)) // hides the length: sent chunked
			} else if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, _ := http.NewRequest(tc.method, a.URL+tc.path, body)
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var msg struct{ Error string }
			if resp.StatusCode != tc.want {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, b)
			}
			if err := json.NewDecoder(resp.Body).Decode(&msg); err != nil || msg.Error == "" {
				t.Fatalf("no error message: %v", err)
			}
		})
	}

	var after map[string]any
	getJSON(t, a.URL+"/api/state", &after)
	b1, _ := json.Marshal(before)
	b2, _ := json.Marshal(after)
	if string(b1) != string(b2) {
		t.Fatalf("bad requests changed the state:\nbefore %s\nafter  %s", b1, b2)
	}
}

// Monitors send HEAD: the page and the streams answer it with their headers
// and open nothing. The static files are served, their folder not listed.
func TestHeadAndStatic(t *testing.T) {
	a := startApp(t, nil)
	for path, ctype := range map[string]string{
		"/":                                 "text/html",
		"/events":                           "text/event-stream",
		"/events?format=json":               "text/event-stream",
		"/rooms/shop/x":                     "text/html",
		"/rooms/shop/x/events":              "text/event-stream",
		"/api/state":                        "application/json",
		"/healthz":                          "text/plain",
		"/static/style.css":                 "text/css",
		"/rooms/shop/x/events/":             "text/html", // the page of room shop/x/events
		"/embed/shop/x":                     "text/html",
		"/embed.js":                         "text/javascript",
		"/rooms/shop/x/events?format=badge": "text/event-stream",
	} {
		resp, err := http.Head(a.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) {
			t.Fatalf("HEAD %s: %d %q, want 200 %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), ctype)
		}
		if resp.Close { // a stream's answer ends its connection
			t.Fatalf("HEAD %s answered as a stream", path)
		}
	}
	if r := do(t, "HEAD", a.URL+"/events?format=xml", nil); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("HEAD of a bad stream query: %d, want 400", r.StatusCode)
	}
	var state regionsJSON
	getJSON(t, a.URL+"/api/state", &state)
	for _, r := range state.Regions {
		if r.Count != 0 {
			t.Fatalf("HEAD opened streams: %+v", state.Regions)
		}
	}
	for path, want := range map[string]int{"/static/": 404, "/static": 404, "/static/style.css": 200, "/static/./": 404} {
		if r := do(t, "GET", a.URL+path, nil); r.StatusCode != want {
			t.Fatalf("GET %s: %d, want %d", path, r.StatusCode, want)
		}
	}
}
