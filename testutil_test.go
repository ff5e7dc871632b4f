package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"globalpresence/internal/cluster"
)

// app is a real server started by run, on a loopback port of its own.
type app struct {
	URL  string
	stop func() error       // graceful shutdown; returns run's error
	logs *cluster.LogBuffer // what it wrote to stderr
}

// startApp runs the whole program as main would, with extra flags, and stops
// it when the test ends (even on failure).
func startApp(t testing.TB, env map[string]string, args ...string) *app {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, outW := io.Pipe()
	done := make(chan error, 1)
	getenv := func(k string) string { return env[k] }
	a := &app{logs: &cluster.LogBuffer{}}
	go func() {
		done <- run(ctx, append([]string{"-addr", "127.0.0.1:0"}, args...), getenv, outW, a.logs)
		outW.Close()
	}()
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		if _, after, ok := strings.Cut(lines.Text(), "listening on "); ok {
			a.URL, _, _ = strings.Cut(after, " ")
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	if a.URL == "" {
		cancel()
		t.Fatalf("app did not start: %v", <-done)
	}
	var stopped bool
	var runErr error
	a.stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(15 * time.Second):
				t.Fatal("app did not stop within 15 s")
			}
		}
		return runErr
	}
	t.Cleanup(func() {
		if err := a.stop(); err != nil {
			t.Errorf("app stopped with error: %v", err)
		}
	})
	return a
}

// newBrowserClient is an HTTP client with its own cookie jar: one "browser".
func newBrowserClient(t testing.TB) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 10 * time.Second}
}
