package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"globalpresence/presence"
)

// The page as a user gets it, at its edges: without JavaScript, when the
// connection drops, when a post fails, from the keyboard, at phone and
// desktop widths, and with assistive technology in mind.

// Without JavaScript the forms still work: a plain POST comes back as 303
// to the page (the room's page, for a room), which shows the change.
func TestBrowserWithoutJavaScript(t *testing.T) {
	exe := findChromium(t)
	a := startApp(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	p := openProfile(t, ctx, exe, "no-JS", a.URL)

	for _, path := range []string{"/", "/rooms/shop/product-1"} {
		p.do(t, "turn scripts off and open "+path,
			chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
				_, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
				return err
			}),
			chromedp.Navigate(a.URL+path))
		if got := p.text(t, "noscript"); !strings.Contains(got, "won't update live") {
			t.Errorf("%s: noscript says %q", path, got)
		}
		if got := p.text(t, "#light-state"); got != "off" {
			t.Fatalf("%s: light starts %q, want off", path, got)
		}
		p.submit(t, "flip the switch", a.URL+path, chromedp.Click(chromedp.CSS("#flip")))
		if got := p.text(t, "#light-state"); got != "on" {
			t.Errorf("%s: light after the post %q, want on", path, got)
		}
		text := "no script needed in " + path
		p.submit(t, "say hi", a.URL+path, chromedp.SendKeys(chromedp.CSS("#hi-text"), text), chromedp.Click(chromedp.CSS("#say-hi")))
		if got := p.text(t, "#messages q"); got != text {
			t.Errorf("%s: newest message after the post %q, want %q", path, got, text)
		}
		// Nothing ran: the page was never made live.
		if conn := p.eval(t, `document.querySelector("main").dataset.conn`); conn != "connecting" {
			t.Errorf("%s: data-conn %q: scripts ran", path, conn)
		}
	}
}

// The status follows the page's own connection to the server: live, then
// reconnecting and offline (content marked stale) while the server is
// gone, and live again with the new snapshot once it is back. A post made
// meanwhile says it was not sent.
func TestBrowserConnectionStatus(t *testing.T) {
	exe := findChromium(t)
	a, addr, ctx := startRestartableApp(t)
	p := openProfile(t, ctx, exe, "A", a.URL)
	p.waitFor(t, "the page says live", connIs("live")+` && `+visibleTextIs("#status", "Live"))
	p.do(t, "flip the switch", chromedp.Click(chromedp.CSS("#flip")))
	p.waitFor(t, "the light turns on", textIs("#light-state", "on"))
	p.waitFor(t, "the switch says it is on", `document.querySelector("#flip[role=switch]").getAttribute("aria-checked") === "true"`)

	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	p.waitFor(t, "the page says reconnecting", `["reconnecting", "offline"].includes(document.querySelector("main").dataset.conn) && `+
		`document.querySelector("#conn").innerText.includes("reconnecting…") && !document.querySelector("#status").checkVisibility()`)
	p.waitFor(t, "what is shown is marked stale", `getComputedStyle(document.querySelector("section.presence")).opacity < 1`)
	p.waitFor(t, "the page says since when it is offline",
		connIs("offline")+` && /^Offline since \d\d:\d\d: reconnecting…/.test(document.querySelector("#conn").innerText)`)
	if got := p.text(t, "#light-state"); got != "on" {
		t.Errorf("light while offline: %q, want the last state shown, on", got)
	}
	p.do(t, "say hi while offline", chromedp.SendKeys(chromedp.CSS("#hi-text"), "lost\r"))
	p.waitFor(t, "the form says it was not sent", `document.querySelector("#hi-form .error").textContent.startsWith("Not sent")`)
	if got := p.eval(t, `document.querySelector("#hi-text").value`); got != "lost" {
		t.Errorf("typed text after a failed send: %q, want kept", got)
	}
	p.screenshot(t, "offline.png")

	// The same address again, with a fresh store: the light is off there.
	startApp(t, nil, "-addr", addr)
	p.waitFor(t, "the page is live again", connIs("live")+` && `+visibleTextIs("#status", "Live"))
	p.waitFor(t, "the snapshot replaces what was shown", textIs("#light-state", "off"))
	p.waitFor(t, "nothing is marked stale", `getComputedStyle(document.querySelector("section.presence")).opacity == 1`)
}

// A refused post shows the server's message beside the control, in a live
// region, and keeps what was typed; Enter keeps the focus in the text box.
func TestBrowserShowsErrorsAndKeepsFocus(t *testing.T) {
	exe := findChromium(t)
	a := startApp(t, nil, "-hi-rate", "0.001", "-hi-burst", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	p := openProfile(t, ctx, exe, "A", a.URL)
	p.waitFor(t, "the page is live", connIs("live"))
	const textBox = "#hi-form input[name=text]"

	p.do(t, "type a message and press Enter", chromedp.SendKeys(chromedp.CSS(textBox), "first\r"))
	p.waitFor(t, "the message is listed", textIs("#messages q", "first"))
	p.waitFor(t, "a fresh form, with the focus in its text box",
		`document.querySelector(`+jsString(textBox)+`).value === "" && document.activeElement === document.querySelector(`+jsString(textBox)+`)`)

	p.do(t, "type on and press Enter again", chromedp.KeyEvent("second\r"))
	p.waitFor(t, "the rate limit's message is shown",
		`document.querySelector("#hi-form .error[role=alert]").textContent.startsWith("too many messages")`)
	if got := p.eval(t, `document.querySelector(`+jsString(textBox)+`).value`); got != "second" {
		t.Errorf("typed text after a 429: %q, want kept", got)
	}
	if got := p.eval(t, `document.activeElement === document.querySelector(`+jsString(textBox)+`)`); got != "true" {
		t.Error("focus left the text box after a 429")
	}
}

// Presence comes first at every width, the viewer is marked in the cards,
// and the page has no serious accessibility fault in either colour scheme.
// Screenshots at each width go to the test's temp dir (and $SCREENSHOT_DIR).
func TestBrowserPageLayoutAndAccessibility(t *testing.T) {
	exe := findChromium(t)
	a := startApp(t, nil, "-hi-burst", "10")
	// A full feed: it must not stretch the cards beside it.
	for i := range presence.FeedLen - 1 {
		postTo(t, a.URL, "/hi", url.Values{"text": {fmt.Sprintf("message %d, long enough to wrap on a phone's narrow screen", i)}})
	}
	postTo(t, a.URL, "/hi", url.Values{"text": {"שלום מירושלים"}})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	p := openProfile(t, ctx, exe, "A", a.URL)
	p.waitFor(t, "the viewer is in the region card", `document.querySelector(".region.here .count").textContent === "1 user"`)

	// The viewer's avatar in the card has the colour of their own card
	// and a "you" tag.
	same := `(() => { const you = document.querySelector(".you .avatar"), card = document.querySelector(".region.here .avatars li");
		return getComputedStyle(you).backgroundColor === getComputedStyle(card).backgroundColor &&
			getComputedStyle(card, "::after").content === '"you"' })()`
	p.waitFor(t, "the viewer's avatar is marked and coloured as their own", same)
	if dir := p.eval(t, `document.querySelector("#messages q").getAttribute("dir")`); dir != "auto" {
		t.Errorf("message dir %q, want auto", dir)
	}
	for _, sel := range []string{"#light", "#messages", "#tabs"} {
		if live := p.eval(t, `document.querySelector(`+jsString(sel)+`).getAttribute("aria-live")`); live != "polite" {
			t.Errorf("%s: aria-live %q, want polite", sel, live)
		}
	}

	for _, size := range []struct{ w, h int64 }{{1280, 1000}, {820, 1000}, {390, 844}} {
		p.do(t, "resize", chromedp.EmulateViewport(size.w, size.h))
		// Presence first: the region cards start above the fold and
		// above everything else on the page.
		p.waitFor(t, fmt.Sprintf("presence first at %d px", size.w), `(() => {
			const top = e => document.querySelector(e).getBoundingClientRect().top;
			return top(".region.here") < innerHeight - 80 && [".you", ".light", ".hi", ".about"].every(s => top(".presence") <= top(s)) })()`)
		// No empty panels: no card is taller than it is when sized to
		// its own content.
		p.waitFor(t, fmt.Sprintf("no stretched cards at %d px", size.w), `[...document.querySelectorAll("main > section")].every(s => {
			const h = s.getBoundingClientRect().height;
			s.style.alignSelf = "start";
			const own = s.getBoundingClientRect().height;
			s.style.alignSelf = "";
			return h - own < 1 })`)
		p.screenshot(t, fmt.Sprintf("page-%d.png", size.w))
	}

	axe, err := os.ReadFile("testdata/axe-core/axe.min.js")
	if err != nil {
		t.Fatal(err)
	}
	p.do(t, "load axe-core", chromedp.EmulateViewport(1280, 1000), chromedp.Evaluate[chromedp.Void](string(axe)))
	for _, scheme := range []string{"dark", "light"} {
		p.do(t, "emulate "+scheme, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
				Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}})
			return err
		}))
		found, err := chromedp.Run(p.ctx, chromedp.Evaluate[[]string](`axe.run(document).then(r => r.violations
			.filter(v => v.impact === "serious" || v.impact === "critical")
			.map(v => v.impact + " " + v.id + ": " + v.help + " at " + v.nodes.map(n => n.target.join(" ")).join(", ")))`,
			chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("axe in %s: %v", scheme, err)
		}
		for _, v := range found {
			t.Errorf("axe, %s scheme: %s", scheme, v)
		}
		p.screenshot(t, "page-"+scheme+".png")
	}
}

// In a large room the card shows a sample; a viewer the sample leaves out
// still sees themselves in it, in the slot kept for "you".
func TestBrowserLargeRoomShowsYou(t *testing.T) {
	exe := findChromium(t)
	a := startApp(t, nil, "-large-room", "2")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	p := openProfile(t, ctx, exe, "A", a.URL)
	id := strings.TrimPrefix(p.text(t, "#you-id"), "User #")
	// Others whose IDs sort before the viewer's fill the sample.
	for n := 0; n < 3; {
		secret := presence.NewSecret()
		if presence.IDFromSecret(secret).Short() >= id {
			continue
		}
		other := newBrowserClient(t)
		u, _ := url.Parse(a.URL)
		other.Jar.SetCookies(u, []*http.Cookie{{Name: "gp_secret", Value: secret}})
		openStream(t, a.URL, other, "/events?format=json").waitFor(t, "tabs", func(string) bool { return true })
		n++
	}
	p.waitFor(t, "4 users, a sample of 2", textIs(".region.here .count", "4 users"))
	p.waitFor(t, "the viewer in the slot kept for them", fmt.Sprintf(`(() => {
		const slot = document.querySelector(".region.here .you-slot");
		return getComputedStyle(slot).display !== "none" && getComputedStyle(slot, "::before").content === %s &&
			getComputedStyle(slot, "::after").content === '"you"' &&
			document.querySelector(".region.here .more").innerText === "and 1 more" })()`, jsString(`"`+id[:2]+`"`)))
	p.screenshot(t, "large-room.png")
}

// submit runs actions that post a form without JavaScript, and checks
// where the browser ends: on page, as a 200 (after the 303).
func (p *profile) submit(t *testing.T, what, page string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, actions...)
	if err != nil {
		t.Fatalf("%s: %s: %v", p.name, what, err)
	}
	if resp.URL != page || resp.Status != http.StatusOK {
		t.Fatalf("%s: %s: ended on %s (%d), want %s (200)", p.name, what, resp.URL, resp.Status, page)
	}
}

// connIs is a predicate: the page's stream is in this state.
func connIs(state string) string {
	return fmt.Sprintf(`document.querySelector("main").dataset.conn === %s`, jsString(state))
}

// visibleTextIs is a predicate: the element's rendered text is want.
func visibleTextIs(sel, want string) string {
	return fmt.Sprintf(`document.querySelector(%s)?.innerText.trim() === %s`, jsString(sel), jsString(want))
}

// eval returns a JS expression's value in the page, as a string.
func (p *profile) eval(t *testing.T, expr string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`String(`+expr+`)`))
	if err != nil {
		t.Fatalf("%s: %s: %v", p.name, expr, err)
	}
	return v
}

// startRestartableApp starts the app on a loopback address free now, which
// a test that stops it can start another on (its pages reconnect there),
// with a context for the browser that watches it.
func startRestartableApp(t *testing.T) (*app, string, context.Context) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return startApp(t, nil, "-addr", addr), addr, ctx
}
