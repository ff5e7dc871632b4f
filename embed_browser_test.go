package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// hostSite is another site on a loopback port of its own that embeds a
// room of app, as a shop would: /iframe.html frames the badge,
// /element.html uses the custom element.
type hostSite struct {
	URL    string
	Origin string
}

const hostPageFmt = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Product 123 · a shop</title></head>
<body style="font-family: sans-serif; background: #f4f1ea; padding: 16px">
<h1>Product 123</h1>
%s
</body></html>`

func startHostSite(t *testing.T) (*hostSite, func(appURL, room string)) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pages := map[string]string{}
	var ready = make(chan struct{})
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-ready
		body, ok := pages[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, hostPageFmt, body)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	h := &hostSite{URL: "http://" + ln.Addr().String()}
	h.Origin = h.URL
	return h, func(appURL, room string) {
		pages["/iframe.html"] = fmt.Sprintf(`<iframe id="badge" title="Who else is here" src="%s/embed/%s?feed=1&theme=dark" width="340" height="300" style="border:0"></iframe>`, appURL, room)
		pages["/element.html"] = fmt.Sprintf(`<script src="%s/embed.js" async></script>
<global-presence room="%s" style="--gp-accent: #b3261e"></global-presence>`, appURL, room)
		close(ready)
	}
}

// TestBrowserEmbeds drives real Chromium: a shop on another origin embeds a
// room as an iframe (one tab) and as the custom element (a second tab) in
// one profile; a second profile opens the room's own page. Both embeds must
// count 2 viewers, then 1 once the second profile closes. An app that does
// not list the shop must be refused by the browser (frame-ancestors) and
// by the stream (CORS).
func TestBrowserEmbeds(t *testing.T) {
	exe := findChromium(t)
	host, serve := startHostSite(t)
	a := startApp(t, nil, "-embed-origins", host.Origin)
	const room = "shop/product-123"
	serve(a.URL, room)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)

	shop := openProfileAt(t, ctx, exe, "shop", host.URL+"/iframe.html")
	elementTab := shop.newTab(t, host.URL+"/element.html")
	frame := shop.frameNode(t, "#badge")

	reader := openProfileAt(t, ctx, exe, "reader", a.URL+"/rooms/"+room)
	reader.waitFor(t, "the reader's page counts both users", textIs(".region.here .count", "2 users"))

	waitBoth := func(want string) {
		t.Helper()
		shop.waitInFrame(t, frame, "the iframe shows "+want, ".gp-total", want)
		elementTab.waitForValue(t, "the element's count", `document.querySelector("global-presence")?.shadowRoot?.querySelector(".gp-total")?.textContent.trim()`, want)
	}
	waitBoth("2 people here now")

	// The viewer's own avatar is marked in both.
	elementTab.waitFor(t, "the element marks the viewer's avatar", `(() => {
		const root = document.querySelector("global-presence").shadowRoot;
		const me = root.querySelector("[data-me]")?.getAttribute("data-me");
		const av = me && root.querySelector('[data-u="' + me + '"]');
		return !!av && getComputedStyle(av).boxShadow !== "none";
	})()`)
	shop.screenshot(t, "embed-iframe.png")
	elementTab.screenshot(t, "embed-element.png")

	reader.close(t)
	waitBoth("1 person here now")

	// An app that lists no other site: the browser refuses to frame it, and
	// its stream refuses the element, so no viewer is counted.
	b := startApp(t, nil)
	refusedHost, serveRefused := startHostSite(t)
	serveRefused(b.URL, room)
	refused := shop.newTab(t, refusedHost.URL+"/iframe.html")
	refused.waitFrameBlocked(t, b.URL+"/embed/"+room)
	refused.do(t, "open the element's page", chromedp.Navigate(refusedHost.URL+"/element.html"))
	refused.waitFor(t, "the element says it is reconnecting", `document.querySelector("global-presence")?.shadowRoot?.querySelector(".gp-badge.gp-reconnecting") != null`)
	if got := b.logs.String(); !strings.Contains(got, `"path":"/embed/`+room) {
		t.Fatalf("the refused iframe never reached the app; log:\n%s", got)
	}
	if n := viewersOf(t, b.URL, room); n != 0 {
		t.Fatalf("a refused embed counts %d viewers, want 0", n)
	}
}

// openProfileAt is openProfile on any page, not the app's root.
func openProfileAt(t *testing.T, ctx context.Context, exe, name, url string) *profile {
	t.Helper()
	p := openProfile(t, ctx, exe, name, "about:blank#")
	p.do(t, "open "+url, chromedp.Navigate(url))
	return p
}

// newTab opens url in another tab of the same browser (same cookies).
func (p *profile) newTab(t *testing.T, url string) *profile {
	t.Helper()
	tctx, cancel := chromedp.NewContext(p.ctx)
	t.Cleanup(cancel)
	// The tab lives as long as the context of its first action: tctx itself,
	// not one with a shorter timeout.
	if err := chromedp.Do(tctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("%s: opening a tab at %s: %v", p.name, url, err)
	}
	return &profile{name: p.name + " tab", ctx: tctx}
}

// close ends the profile's browser, as a user quitting it.
func (p *profile) close(t *testing.T) {
	t.Helper()
	if err := chromedp.Cancel(p.ctx); err != nil {
		t.Fatalf("%s: closing the browser: %v", p.name, err)
	}
}

// frameNode waits for the iframe sel to load and returns its node, to query
// inside it.
func (p *profile) frameNode(t *testing.T, sel string) *chromedp.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	nodes, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("%s: finding %s: %v", p.name, sel, err)
	}
	return nodes[0]
}

// waitInFrame waits until an element sel inside frame has text want.
func (p *profile) waitInFrame(t *testing.T, frame *chromedp.Node, what, sel, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var got string
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(p.ctx, 2*time.Second)
		s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel), chromedp.FromNode(frame)))
		cancel()
		if got = strings.TrimSpace(s); err == nil && got == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: waiting until %s: %s is %q", p.name, what, sel, got)
}

// viewersOf counts the users in a room, all regions, from its JSON state.
func viewersOf(t *testing.T, appURL, room string) int {
	t.Helper()
	var st regionsJSON
	getJSON(t, appURL+"/api/rooms/"+room, &st)
	n := 0
	for _, r := range st.Regions {
		n += r.Count
	}
	return n
}

// waitForValue polls a JS expression until it equals want, and tells what it
// was last otherwise.
func (p *profile) waitForValue(t *testing.T, what, expr, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var got string
	var lastErr error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(p.ctx, 2*time.Second)
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`String(`+expr+`)`))
		cancel()
		if got, lastErr = s, err; err == nil && got == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: %s is %q, want %q (%v)", p.name, what, got, want, lastErr)
}

// waitFrameBlocked waits until the page's iframe of url shows Chromium's
// error page instead, as it does when frame-ancestors forbids it.
func (p *profile) waitFrameBlocked(t *testing.T, url string) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(p.ctx, 2*time.Second)
		err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			tree, err := chromedp.Call(ctx, page.GetFrameTree, cdp.Empty{})
			if err != nil {
				return err
			}
			last = ""
			for _, c := range tree.FrameTree.ChildFrames {
				last += fmt.Sprintf("[%s unreachable=%s] ", c.Frame.URL, c.Frame.UnreachableURL)
			}
			return nil
		}))
		cancel()
		if err == nil && strings.Contains(last, "[chrome-error://chromewebdata/ unreachable="+url) {
			return
		}
	}
	t.Fatalf("%s: the iframe of %s was not blocked: frames %s", p.name, url, last)
}

// The iframe badge shows its own connection: reconnecting, with the
// presence dimmed, while the server is gone, and live again with the new
// snapshot once it is back.
func TestBrowserEmbedConnectionStatus(t *testing.T) {
	exe := findChromium(t)
	a, addr, ctx := startRestartableApp(t)
	const badge, status, presence = `document.querySelector(".gp-badge")`, `document.querySelector(".gp-status").innerText.trim()`,
		`getComputedStyle(document.querySelector(".gp-presence")).opacity`
	p := openProfileAt(t, ctx, exe, "A", a.URL+"/embed/shop/product-7")
	p.waitFor(t, "the badge says live", status+` === "Live" && `+presence+` == 1`)

	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	p.waitFor(t, "the badge says reconnecting", badge+`.classList.contains("gp-reconnecting") && `+status+` === "Reconnecting…"`)
	p.waitFor(t, "the presence is dimmed", presence+` < 1`)
	p.screenshot(t, "embed-reconnecting.png")

	startApp(t, nil, "-addr", addr)
	p.waitFor(t, "the badge is live again", status+` === "Live" && !`+badge+`.classList.contains("gp-reconnecting") && `+presence+` == 1`)
	p.waitFor(t, "it counts its viewer again", textIs(".gp-total", "1 person here now"))
}
