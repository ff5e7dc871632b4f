package main

import (
	"bytes"
	"context"
	"io"
	"regexp"
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
