package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserTwoProfiles drives two independent Chromium profiles (two users)
// against the real server: what one does must reach the other live, over
// htmx and SSE, without a reload.
func TestBrowserTwoProfiles(t *testing.T) {
	exe := findChromium(t)
	a := startApp(t, nil)

	// One bound for the whole test; the browsers die with it. Registered after
	// startApp, so it and the browser cleanups run before the app stops.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)

	pa := openProfile(t, ctx, exe, "A", a.URL)
	pb := openProfile(t, ctx, exe, "B", a.URL)

	// Each page first paints without its own tab, so "2 users" can only come
	// from a live update after both streams joined.
	for _, p := range []*profile{pa, pb} {
		p.waitFor(t, `both users shown in this region`, textIs(".region.here .count", "2 users"))
		if got := p.text(t, "#tabs"); got != "You've got 1 tab open on this page" {
			t.Errorf("%s: #tabs = %q, want 1 tab (profiles must not share cookies)", p.name, got)
		}
	}

	// Separate profiles must mean separate cookies, hence separate users;
	// E3B0C442 is the ID derived from an empty secret.
	idRe := regexp.MustCompile(`^User #[0-9A-F]{8}$`)
	idA, idB := pa.text(t, "#you-id"), pb.text(t, "#you-id")
	for _, id := range []string{idA, idB} {
		if !idRe.MatchString(id) || id == "User #E3B0C442" {
			t.Errorf("bad #you-id %q", id)
		}
	}
	if idA == idB {
		t.Fatalf("both profiles are %s: cookies are shared", idA)
	}

	// The light: A flips it, B sees it without reloading.
	if got := pb.text(t, "#light-state"); got != "off" {
		t.Fatalf("B: light starts %q, want off", got)
	}
	pa.do(t, "click #flip", chromedp.Click(chromedp.CSS("#flip")))
	pb.waitFor(t, "the light turns on", textIs("#light-state", "on"))
	pa.waitFor(t, "the light turns on", textIs("#light-state", "on"))

	// A message: A says hi, B sees the text with A's ID.
	const hello = "hello from A"
	pa.do(t, "type and send a message",
		chromedp.SendKeys(chromedp.CSS(`#hi-form input[name=text]`), hello),
		chromedp.Click(chromedp.CSS("#say-hi")),
	)
	pb.waitFor(t, "A's message is listed", fmt.Sprintf(
		`Array.from(document.querySelectorAll("#messages li")).some(li => `+
			`li.querySelector("q")?.textContent === %s && li.textContent.includes(%s))`,
		jsString(hello), jsString(idA)))
	// The response replaces the form, which comes back empty.
	pa.waitFor(t, "the form is replaced by an empty one",
		`document.querySelector("#hi-form input[name=text]")?.value === ""`)

	pb.screenshot(t, "browser-b.png")
}

// findChromium returns the browser to drive. CI must have it, or the test
// would pass there without testing anything.
func findChromium(t *testing.T) string {
	t.Helper()
	if st, err := os.Stat("/usr/bin/chromium"); err == nil && !st.IsDir() {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is required in CI: run the README's test command which installs it")
	}
	t.Skip("chromium not found; skipping the browser test")
	return ""
}

// profile is one browser with a profile directory of its own, so its cookies
// (and hence its user) are its own.
type profile struct {
	name string
	ctx  context.Context // chromedp context of the browser's one tab
}

func openProfile(t *testing.T, ctx context.Context, exe, name, url string) *profile {
	t.Helper()
	// Made before the cleanup below is registered, so it is removed only
	// after Chromium has exited.
	dir := t.TempDir()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(dir),
		chromedp.Headless,
		chromedp.NoSandbox, // tests run as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		// Only loopback is reachable: nothing may try to call home.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)

	// Keep the page's console, to explain a failure (a JS error, a broken
	// stream) that the DOM alone would not show.
	var mu sync.Mutex
	var console []string
	messages := chromedp.Console(bctx) // starts the browser, bound to bctx
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			mu.Lock()
			line := fmt.Sprintf("%s: %s", m.Type, m.Text)
			if m.URL != "" {
				line += " (" + m.URL + ")"
			}
			console = append(console, line)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc() // waits for the process to exit
		<-done
		if t.Failed() {
			mu.Lock()
			defer mu.Unlock()
			t.Logf("%s: browser console:\n\t%s", name, strings.Join(console, "\n\t"))
		}
	})

	p := &profile{name: name, ctx: bctx}
	p.do(t, "open the page", chromedp.Navigate(url+"/"))
	return p
}

// do runs actions, failing the test with what was being done.
func (p *profile) do(t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %s: %v", p.name, what, err)
	}
}

func (p *profile) text(t *testing.T, sel string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("%s: reading %s: %v", p.name, sel, err)
	}
	return strings.TrimSpace(s)
}

// waitFor polls a JS predicate in the page until it holds, so the test waits
// exactly as long as the live update takes; on timeout it shows the page.
func (p *profile) waitFor(t *testing.T, what, predicate string) {
	t.Helper()
	const limit = 20 * time.Second
	ctx, cancel := context.WithTimeout(p.ctx, limit+2*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](predicate,
		chromedp.WithPollingInterval(50*time.Millisecond),
		chromedp.WithPollingTimeout(limit)))
	if err != nil {
		hctx, hcancel := context.WithTimeout(p.ctx, 5*time.Second)
		defer hcancel()
		html, _ := chromedp.Run(hctx, chromedp.OuterHTML(chromedp.CSS("main")))
		t.Fatalf("%s: waiting until %s: %v\npage now:\n%s", p.name, what, err, html)
	}
}

// screenshot saves the whole page, and copies it to $SCREENSHOT_DIR when set
// so that a developer can look at it after the test.
func (p *profile) screenshot(t *testing.T, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	// Quality 100 makes chromedp capture PNG; anything less is JPEG.
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("%s: screenshot: %v", p.name, err)
	}
	paths := []string{filepath.Join(t.TempDir(), name)}
	if dir := os.Getenv("SCREENSHOT_DIR"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, filepath.Join(dir, name))
	}
	for _, path := range paths {
		if err := os.WriteFile(path, buf, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: screenshot at %s", p.name, path)
	}
}

// textIs is a predicate: some element matching sel has exactly this text.
func textIs(sel, want string) string {
	return fmt.Sprintf(`Array.from(document.querySelectorAll(%s)).some(e => e.textContent.trim() === %s)`,
		jsString(sel), jsString(want))
}

// jsString quotes s as a JavaScript string literal (JSON is valid JS).
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
