package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/r3labs/sse/v2"
	"gopkg.in/cenkalti/backoff.v1"
)

// stream is a live SSE subscription read with the r3labs/sse client, as a Go
// consumer of the stream would.
type stream struct {
	events chan *sse.Event
	cancel context.CancelFunc
	done   chan struct{}
}

// openStream connects to path on the server at base with the cookies of
// browser (nil: none).
func openStream(t testing.TB, base string, browser *http.Client, path string) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := sse.NewClient(base + path)
	c.Connection = &http.Client{} // no timeout: the stream is long-lived
	if browser != nil {
		c.Connection.Jar = browser.Jar
	}
	c.ReconnectStrategy = &backoff.StopBackOff{}
	s := &stream{events: make(chan *sse.Event, 1024), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		_ = c.SubscribeRawWithContext(ctx, func(ev *sse.Event) {
			select {
			case s.events <- ev:
			case <-ctx.Done():
			}
		})
	}()
	t.Cleanup(s.close)
	return s
}

func (s *stream) close() {
	s.cancel()
	<-s.done
}

// waitFor reads events until one named name whose data satisfies match.
func (s *stream) waitFor(t testing.TB, name string, match func(data string) bool) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-s.events:
			if string(ev.Event) == name && match(string(ev.Data)) {
				return string(ev.Data)
			}
		case <-s.done:
			t.Fatalf("stream ended while waiting for %q", name)
		case <-deadline:
			t.Fatalf("no matching %q event within 10 s", name)
		}
	}
}

// waitJSON waits for a JSON event whose decoded data satisfies match.
func waitJSON[T any](t testing.TB, s *stream, name string, match func(T) bool) T {
	t.Helper()
	var v T
	s.waitFor(t, name, func(data string) bool {
		var got T
		if err := json.Unmarshal([]byte(data), &got); err != nil {
			t.Fatalf("%s event is not JSON: %v: %q", name, err, data)
		}
		v = got
		return match(got)
	})
	return v
}

func contains(sub string) func(string) bool {
	return func(s string) bool { return strings.Contains(s, sub) }
}
