package main

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// What a browser sends for a plain form post (Chromium's navigation Accept).
const browserAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"

// send posts form to u with the given headers and answers without
// following a redirect.
func send(t *testing.T, u string, form url.Values, header map[string]string) (*http.Response, string) {
	t.Helper()
	h := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	maps.Copy(h, header)
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return request(t, c, http.MethodPost, u, strings.NewReader(form.Encode()), h)
}

// A browser posting a form without htmx is sent back to the page it posted
// from (303 See Other), where the change shows; for every kind of room.
func TestPlainFormPostsRedirectToThePage(t *testing.T) {
	a := startApp(t, nil)
	for _, tc := range []struct{ base, page string }{
		{"", "/"},
		{"/rooms/shop/product-1", "/rooms/shop/product-1"},
		{"/rooms/a/events", "/rooms/a/events/"}, // without the slash it would be a stream
	} {
		text := "posted without script to " + tc.page
		for _, p := range []struct {
			path string
			form url.Values
			want string
		}{
			{"/hi", url.Values{"text": {text}, "colour": {"teal"}}, "<q dir=\"auto\">" + text + "</q>"},
			{"/lightbulb", nil, `id="light-state">on<`},
		} {
			resp, body := send(t, a.URL+tc.base+p.path, p.form, map[string]string{"Accept": browserAccept})
			if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != tc.page {
				t.Fatalf("POST %s%s: %d to %q, want 303 to %s\n%s", tc.base, p.path, resp.StatusCode, resp.Header.Get("Location"), tc.page, body)
			}
			resp, page := get(t, a.URL+tc.page, nil)
			if resp.StatusCode != http.StatusOK || !strings.Contains(page, p.want) {
				t.Fatalf("%s after POST %s lacks %s", tc.page, p.path, p.want)
			}
		}
	}

	// A refused plain post gets a page saying why, with the way back.
	resp, body := send(t, a.URL+"/rooms/shop/product-1/hi", url.Values{"colour": {"mauve"}}, map[string]string{"Accept": browserAccept})
	if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(body, "unknown colour") || !strings.Contains(body, `href="/rooms/shop/product-1"`) {
		t.Fatalf("refused plain post: %d %s\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

// curl and scripts keep their JSON answers: the same status and fields as
// before forms learned to post without htmx, whatever they accept.
func TestCurlKeepsItsJSONAnswers(t *testing.T) {
	a := startApp(t, nil, "-hi-burst", "20")
	hiFields := []string{"at", "city", "colour", "from", "id", "region", "text", "user"}
	lightFields := []string{"at", "by", "city", "flips", "on", "region"}
	for _, accept := range []string{"*/*", "", "application/json", "application/json, text/html;q=0.5"} {
		h := map[string]string{"Accept": accept}
		resp, body := send(t, a.URL+"/hi", url.Values{"text": {"from curl"}}, h)
		checkJSON(t, resp, body, http.StatusCreated, hiFields)
		resp, body = send(t, a.URL+"/rooms/r/lightbulb", nil, h)
		checkJSON(t, resp, body, http.StatusOK, lightFields)
		resp, body = send(t, a.URL+"/hi", url.Values{"colour": {"mauve"}}, h)
		checkJSON(t, resp, body, http.StatusBadRequest, []string{"error"})
	}
}

// htmx gets a refusal as the message alone, aimed at the error line of the
// form that sent it, so the form and what was typed stay.
func TestHTMXErrorsGoBesideTheControl(t *testing.T) {
	a := startApp(t, nil)
	resp, body := send(t, a.URL+"/hi", url.Values{"colour": {"<b>mauve</b>"}, "text": {"kept"}},
		map[string]string{"HX-Request": "true", "Accept": "*/*"})
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("HX-Retarget") != "find .error" ||
		resp.Header.Get("HX-Reswap") != "innerHTML" || body != "unknown colour" {
		t.Fatalf("htmx refusal: %d %v %q", resp.StatusCode, resp.Header, body)
	}
}

func checkJSON(t *testing.T, resp *http.Response, body string, code int, fields []string) {
	t.Helper()
	var got map[string]any
	if resp.StatusCode != code || resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal([]byte(body), &got) != nil {
		t.Fatalf("%s %s (Accept %q): %d %s %s, want %d JSON", resp.Request.Method, resp.Request.URL.Path,
			resp.Request.Header.Get("Accept"), resp.StatusCode, resp.Header.Get("Content-Type"), body, code)
	}
	if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, fields) {
		t.Fatalf("%s: fields %v, want %v", resp.Request.URL.Path, keys, fields)
	}
}

// The page's policy admits its own <style> by nonce and lets htmx compile
// its hx-on handlers; no other answer allows eval.
func TestPagePolicy(t *testing.T) {
	a := startApp(t, nil)
	resp, page := get(t, a.URL+"/rooms/shop", nil)
	csp := resp.Header.Get("Content-Security-Policy")
	m := regexp.MustCompile(`<style nonce="([^"]+)">`).FindStringSubmatch(page)
	if m == nil || !strings.Contains(csp, "style-src 'self' 'nonce-"+m[1]+"'") || !strings.Contains(csp, "script-src 'self' 'unsafe-eval'") ||
		strings.Contains(csp, "unsafe-inline") {
		t.Fatalf("page CSP %q for its style %v", csp, m)
	}
	for _, path := range []string{"/api/state", "/embed/shop", "/static/style.css"} {
		if resp, _ := get(t, a.URL+path, nil); strings.Contains(resp.Header.Get("Content-Security-Policy"), "unsafe-eval") {
			t.Errorf("%s allows eval: %s", path, resp.Header.Get("Content-Security-Policy"))
		}
	}
}
