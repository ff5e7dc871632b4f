package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// get sends a GET with headers and returns the response with its body read.
func get(t *testing.T, url string, header map[string]string) (*http.Response, string) {
	t.Helper()
	// A stream never ends: a second is enough for its head and snapshot.
	return request(t, &http.Client{Timeout: time.Second}, http.MethodGet, url, nil, header)
}

// request sends a request with headers and returns the response with its
// body read.
func request(t *testing.T, client *http.Client, method, url string, body io.Reader, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// The embed contract over HTTP: who may frame /embed/…, who may read the
// streams and JSON across origins, the badge stream, the cookie of a
// cross-site iframe, and the size of embed.js.
func TestEmbedContract(t *testing.T) {
	const shop, other = "https://shop.example", "https://other.example"
	a := startApp(t, nil, "-embed-origins", shop+", http://127.0.0.1:9")
	const room = "shop/product-123"

	t.Run("iframe page", func(t *testing.T) {
		resp, body := get(t, a.URL+"/embed/"+room+"?feed=1&theme=dark", nil)
		csp := resp.Header.Get("Content-Security-Policy")
		if resp.StatusCode != http.StatusOK || !strings.Contains(csp, "frame-ancestors 'self' "+shop+" http://127.0.0.1:9;") {
			t.Fatalf("GET /embed: %d, CSP %q", resp.StatusCode, csp)
		}
		if xfo := resp.Header.Get("X-Frame-Options"); xfo != "" {
			t.Errorf("X-Frame-Options %q forbids the framing frame-ancestors allows", xfo)
		}
		for _, want := range []string{`sse-connect="/rooms/` + room + `/events?colour=`, `format=badge"`,
			`class="theme-dark"`, `hx-post="/rooms/` + room + `/hi"`, `class="gp-total"`} {
			if !strings.Contains(body, want) {
				t.Errorf("embed page lacks %s", want)
			}
		}
		nonce := between(csp, "'nonce-", "'")
		if nonce == "" || !strings.Contains(body, `<style nonce="`+nonce+`">`) {
			t.Errorf("the viewer's style rule does not carry the CSP nonce %q", nonce)
		}
		if _, body := get(t, a.URL+"/embed/"+room, nil); strings.Contains(body, "gp-feed") || strings.Contains(body, "theme-") {
			t.Error("without ?feed=1 and ?theme the badge has a feed or a forced theme")
		}
		for _, bad := range []string{"/embed/" + room + "?theme=pink", "/embed/" + room + "?feed=yes", "/embed/a//b", "/embed/%2e%2e"} {
			if resp, body := get(t, a.URL+bad, nil); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `"error"`) {
				t.Errorf("GET %s: %d %s, want 400 with a message", bad, resp.StatusCode, body)
			}
		}
	})

	t.Run("no origins listed", func(t *testing.T) {
		b := startApp(t, nil)
		resp, _ := get(t, b.URL+"/embed/"+room, nil)
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'self';") {
			t.Errorf("default CSP %q: only this origin may frame", csp)
		}
		if resp, _ := get(t, b.URL+"/rooms/"+room+"/events?format=badge", map[string]string{"Origin": shop}); resp.StatusCode != http.StatusForbidden {
			t.Errorf("a stream from an unlisted site: %d, want 403", resp.StatusCode)
		}
	})

	t.Run("streams and JSON across origins", func(t *testing.T) {
		for _, path := range []string{"/rooms/" + room + "/events?format=badge", "/events?format=json", "/api/rooms/" + room, "/api/state"} {
			resp, _ := get(t, a.URL+path, map[string]string{"Origin": shop})
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != shop ||
				resp.Header.Get("Access-Control-Allow-Credentials") != "true" || !strings.Contains(resp.Header.Get("Vary"), "Origin") {
				t.Errorf("GET %s from %s: %d, CORS %v", path, shop, resp.StatusCode, resp.Header)
			}
			resp, _ = get(t, a.URL+path, map[string]string{"Origin": other})
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "" {
				t.Errorf("GET %s from %s: allowed %q", path, other, got)
			}
			if stream := strings.Contains(path, "events"); stream != (resp.StatusCode == http.StatusForbidden) {
				t.Errorf("GET %s from %s: %d (streams 403, JSON 200 without CORS)", path, other, resp.StatusCode)
			}
		}
	})

	t.Run("badge stream", func(t *testing.T) {
		_, body := get(t, a.URL+"/rooms/"+room+"/events?format=badge", nil)
		for _, want := range []string{"event: status\n", "event: regions\ndata: <p class=\"gp-total\">", "event: messages\n", "event: tabs\ndata: <span data-me=\""} {
			if !strings.Contains(body, want) {
				t.Errorf("badge snapshot lacks %q:\n%s", want, body)
			}
		}
		if strings.Contains(body, "event: light") || strings.Contains(body, "event: latency") {
			t.Errorf("badge snapshot carries parts the badge does not show:\n%s", body)
		}
	})

	t.Run("cookie in a cross-site iframe", func(t *testing.T) {
		c := startApp(t, nil, "-embed-origins", shop, "-trust-proxy")
		resp, _ := get(t, c.URL+"/embed/"+room, map[string]string{"X-Forwarded-Proto": "https"})
		ck := resp.Header.Get("Set-Cookie")
		for _, want := range []string{"SameSite=None", "Secure", "Partitioned", "HttpOnly"} {
			if !strings.Contains(ck, want) {
				t.Errorf("over HTTPS with embeds, Set-Cookie %q lacks %s", ck, want)
			}
		}
		if resp, _ := get(t, c.URL+"/embed/"+room, nil); !strings.Contains(resp.Header.Get("Set-Cookie"), "SameSite=Lax") {
			t.Errorf("over plain HTTP the cookie must stay SameSite=Lax: %q", resp.Header.Get("Set-Cookie"))
		}
	})

	t.Run("embed.js", func(t *testing.T) {
		resp, js := get(t, a.URL+"/embed.js", nil)
		var gz bytes.Buffer
		w, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
		_, _ = w.Write([]byte(js))
		_ = w.Close()
		t.Logf("embed.js: %d bytes, %d gzipped", len(js), gz.Len())
		if gz.Len() > 8<<10 {
			t.Errorf("embed.js is %d bytes gzipped, more than 8 KiB", gz.Len())
		}
		if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") || strings.Contains(js, "__BADGE_CSS__") ||
			!strings.Contains(js, `customElements.define("global-presence"`) || !strings.Contains(js, ".gp-total") {
			t.Errorf("embed.js (%s) is not the element with its stylesheet inlined", resp.Header.Get("Content-Type"))
		}
	})
}

// between returns the text of s after start up to end.
func between(s, start, end string) string {
	_, after, ok := strings.Cut(s, start)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(after, end)
	return v
}
