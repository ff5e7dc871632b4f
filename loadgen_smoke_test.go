package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"globalpresence/internal/loadgen"
)

// The load generator against the real app, in a short smoke form: it checks
// that the tool and the app work together, not their speed (CI machines are
// shared; the figures are in BENCHMARKS.md).
func TestLoadgenSmoke(t *testing.T) {
	a := startApp(t, nil, "-streams-per-client", "100000")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := loadgen.Run(ctx, []string{"-url", a.URL, "-conns", "300", "-events-per-s", "5", "-churn-per-s", "20",
		"-duration", "3s", "-workers", "inproc"}, &out, io.Discard)
	if err != nil {
		t.Fatalf("loadgen: %v\n%s", err, out.String())
	}
	t.Log(out.String())
	summary := regexp.MustCompile(`(?m)^loadgen: conns=300 events=\d+ p50_ms=[\d.]+ p99_ms=[\d.]+ max_ms=[\d.]+ deliveries_per_s=\d+ lost=0 rss_kib_per_conn=-1 presence_msgs_per_client_s=([\d.]+)`)
	m := summary.FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no matching summary line (or events were lost):\n%s", out.String())
	}
}

// The load generator's rooms mode against the real app: streams spread over
// rooms (one large), posts and churn spread by viewers; every stream gets
// its own room's posts and none of another's, and once the streams close
// the app holds no room.
func TestLoadgenRooms(t *testing.T) {
	a := startApp(t, nil, "-streams-per-client", "100000", "-hi-rate", "1000", "-hi-burst", "1000")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := loadgen.Run(ctx, []string{"-url", a.URL, "-conns", "300", "-rooms", "40", "-big-room", "100", "-events-per-s", "20",
		"-churn-per-s", "20", "-duration", "3s", "-workers", "inproc", "-settle", "10s"}, &out, io.Discard)
	if err != nil {
		t.Fatalf("loadgen: %v\n%s", err, out.String())
	}
	t.Log(out.String())
	summary := regexp.MustCompile(`(?m)^loadgen: conns=300 events=([1-9]\d+) .* lost=0 .* churned=[1-9]\d* churn_failed=0 leaked=0 rooms=40 rooms_lossy=0 idle_rss_kib=-1 rss_after_kib=-1 rooms_after=0 settle_s=`)
	if !summary.MatchString(out.String()) {
		t.Fatalf("no matching summary line (events lost or leaked, or rooms left):\n%s", out.String())
	}
}

// With -warm the same streams first visit the app in one room; the rooms
// run that follows is judged on the idle the app has after that.
func TestLoadgenWarm(t *testing.T) {
	a := startApp(t, nil, "-streams-per-client", "100000", "-hi-rate", "1000", "-hi-burst", "1000")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := loadgen.Run(ctx, []string{"-url", a.URL, "-conns", "100", "-rooms", "10", "-events-per-s", "5",
		"-duration", "2s", "-workers", "inproc", "-settle", "2s", "-warm", "-pid", strconv.Itoa(os.Getpid())}, &out, io.Discard)
	if err != nil {
		t.Fatalf("loadgen: %v\n%s", err, out.String())
	}
	t.Log(out.String())
	for _, re := range []string{`(?m)^loadgen-warm: conns=100 .* lost=0 .* rooms=1 rooms_lossy=0 idle_rss_kib=[1-9]\d* rss_after_kib=[1-9]\d* rooms_after=0 `,
		`(?m)^loadgen: conns=100 .* lost=0 .* rooms=10 rooms_lossy=0 idle_rss_kib=[1-9]\d* rss_after_kib=[1-9]\d* rooms_after=0 `} {
		if !regexp.MustCompile(re).MatchString(out.String()) {
			t.Fatalf("no line matching %s:\n%s", re, out.String())
		}
	}
}
