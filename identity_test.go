package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"globalpresence/internal/redisnode"
	"globalpresence/internal/tokens"
)

const identitySecret = "the-shop-and-presence-share-this-secret"

// A host site names its users with signed tokens: such a user appears by
// name and avatar in the API, the streams and the feed, and their tabs count
// per token subject across browsers. With the embedded store and Redis (the
// profile travels through the store).
func TestIdentityTokens(t *testing.T) {
	env := map[string]string{"IDENTITY_SECRET": identitySecret}
	t.Run("memory", func(t *testing.T) { identityTokens(t, startApp(t, env)) })
	t.Run("redis", func(t *testing.T) {
		node := redisnode.MustStart(t, redisnode.Options{})
		identityTokens(t, startApp(t, map[string]string{"IDENTITY_SECRET": identitySecret, "REDIS_URL": node.URL(), "FLY_REGION": "ams"}))
	})
}

func identityTokens(t *testing.T, a *app) {
	const room = "shop/product-9"
	waitReadyz(t, a.URL, http.StatusOK, 10*time.Second)
	exp := time.Now().Add(time.Hour).Unix()
	ada := tokens.For(map[string]any{"sub": "customer-42", "name": "Ada <b>Lovelace</b>",
		"avatar": "https://cdn.shop.example/a/42.png", "exp": exp}, []byte(identitySecret))
	// The same customer signed in on another browser: a token of its own.
	adaElsewhere := tokens.For(map[string]any{"sub": "customer-42", "name": "Ada <b>Lovelace</b>",
		"avatar": "https://cdn.shop.example/a/42.png", "exp": exp + 60}, []byte(identitySecret))

	// Two browsers (two cookie jars), one customer: one user with 2 tabs.
	s1 := openStream(t, a.URL, newBrowserClient(t), "/rooms/"+room+"/events?format=json&token="+url.QueryEscape(ada))
	s2 := openStream(t, a.URL, newBrowserClient(t), "/rooms/"+room+"/events?format=json&token="+url.QueryEscape(adaElsewhere))
	for _, s := range []*stream{s1, s2} {
		s.waitFor(t, "tabs", contains(`"tabs":2`))
	}
	// Both tabs in the region card, so the page below is rendered after it.
	s1.waitFor(t, "regions", contains(`"tabs":2,"name":"Ada \u003cb\u003eLovelace\u003c/b\u003e","avatar":"https://cdn.shop.example/a/42.png"`))
	var st regionsJSON
	getJSON(t, a.URL+"/api/rooms/"+room, &st)
	if len(st.Regions) != 1 || st.Regions[0].Count != 1 {
		t.Fatalf("one customer in two browsers: %+v", st.Regions)
	}

	// What they post carries their name; the token may come in the body.
	code, body := post(t, newBrowserClient(t), a.URL+"/rooms/"+room+"/hi", url.Values{"text": {"hello"}, "token": {ada}})
	if code != http.StatusCreated || !strings.Contains(body, `"name":"Ada \u003cb\u003eLovelace\u003c/b\u003e"`) {
		t.Fatalf("hi with a token: %d %s", code, body)
	}
	s2.waitFor(t, "messages", contains(`"name":"Ada`))

	// The page and the embed carry the token on to their stream and forms,
	// show the name escaped and the avatar, and allow https images.
	for path, wants := range map[string][]string{
		"/rooms/" + room: {`<strong id="you-id">Ada &lt;b&gt;Lovelace&lt;/b&gt;</strong>`, `title="Ada &lt;b&gt;Lovelace&lt;/b&gt;, 2 tabs"`,
			`<span dir="auto">Ada &lt;b&gt;Lovelace&lt;/b&gt;</span>`, `<img src="https://cdn.shop.example/a/42.png"`,
			`<input type="hidden" name="token" value="` + ada + `">`},
		"/embed/" + room: {`title="Ada &lt;b&gt;Lovelace&lt;/b&gt;"><img src="https://cdn.shop.example/a/42.png"`},
	} {
		resp, err := http.Get(a.URL + path + "?token=" + url.QueryEscape(ada))
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "token="+url.QueryEscape(ada)) ||
			strings.Contains(string(page), "<b>Lovelace") || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "img-src 'self' https:;") {
			t.Fatalf("GET %s with a token: %d, CSP %q\n%s", path, resp.StatusCode, resp.Header.Get("Content-Security-Policy"), page)
		}
		for _, want := range wants {
			if !strings.Contains(string(page), want) {
				t.Errorf("GET %s with a token lacks %s", path, want)
			}
		}
		if n := strings.Count(string(page), `name="token"`); strings.HasPrefix(path, "/rooms/") && n != 2 {
			t.Errorf("the page has %d token fields, want one in each form", n)
		}
	}

	// Bad tokens are refused with 401 and a message everywhere a token goes.
	for name, tok := range map[string]string{
		"expired":   tokens.For(map[string]any{"sub": "x", "name": "X", "exp": time.Now().Add(-time.Hour).Unix()}, []byte(identitySecret)),
		"wrong key": tokens.For(map[string]any{"sub": "x", "name": "X", "exp": exp}, []byte("not-the-shared-secret-not-the-shared")),
		"alg none":  tokens.Sign(`{"alg":"none"}`, fmt.Sprintf(`{"sub":"x","name":"X","exp":%d}`, exp), nil),
		"oversized": tokens.For(map[string]any{"sub": "x", "name": strings.Repeat("n", 65), "exp": exp}, []byte(identitySecret)),
	} {
		for _, path := range []string{"/rooms/" + room, "/rooms/" + room + "/events", "/embed/" + room} {
			resp := do(t, "GET", a.URL+path+"?token="+url.QueryEscape(tok), nil)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s token on %s: %d, want 401", name, path, resp.StatusCode)
			}
		}
		if code, body := post(t, http.DefaultClient, a.URL+"/rooms/"+room+"/lightbulb", url.Values{"token": {tok}}); code != http.StatusUnauthorized || !strings.Contains(body, "invalid token") {
			t.Errorf("%s token on a switch: %d %s", name, code, body)
		}
	}
}

// Without IDENTITY_SECRET a token is refused, not ignored; a short secret
// does not start.
func TestIdentityTokensNeedASecret(t *testing.T) {
	a := startApp(t, nil)
	tok := tokens.For(map[string]any{"sub": "x", "name": "X", "exp": time.Now().Add(time.Hour).Unix()}, []byte(identitySecret))
	if resp := do(t, "GET", a.URL+"/events?token="+tok, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a token on a server without IDENTITY_SECRET: %d, want 401", resp.StatusCode)
	}
	err := run(context.Background(), []string{"-addr", "127.0.0.1:0"},
		func(k string) string { return map[string]string{"IDENTITY_SECRET": "short"}[k] }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "IDENTITY_SECRET") {
		t.Fatalf("a short IDENTITY_SECRET: %v", err)
	}
}
