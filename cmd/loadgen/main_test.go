package main

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"globalpresence/internal/floor"
)

// summary is the line the issue fixes, extra fields allowed after it.
var summary = regexp.MustCompile(`^(loadgen|loadgen-floor): conns=(\d+) events=(\d+) p50_ms=([\d.]+) p99_ms=([\d.]+) max_ms=([\d.]+) deliveries_per_s=([\d.]+) lost=(\d+) rss_kib_per_conn=(-1|-?[\d.]+) presence_msgs_per_client_s=([\d.]+)( .*)?$`)

// startFloor serves the floor in this process on a fresh loopback port.
func startFloor(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = floor.Serve(ln) }()
	t.Cleanup(func() { ln.Close() })
	return "http://" + ln.Addr().String()
}

// checkLine matches a summary line and checks that nothing was lost and the
// latency was measured.
func checkLine(t *testing.T, line, prefix string, conns int) {
	t.Helper()
	m := summary.FindStringSubmatch(line)
	if m == nil || m[1] != prefix {
		t.Fatalf("summary line %q does not match the format", line)
	}
	if n, _ := strconv.Atoi(m[2]); n != conns {
		t.Errorf("conns=%s, want %d", m[2], conns)
	}
	if ev, _ := strconv.Atoi(m[3]); ev < 5 {
		t.Errorf("events=%s, want several", m[3])
	}
	if p50, _ := strconv.ParseFloat(m[4], 64); p50 <= 0 {
		t.Errorf("p50_ms=%s, want > 0", m[4])
	}
	if m[8] != "0" {
		t.Errorf("lost=%s, want 0", m[8])
	}
}

func TestSmokeInProcess(t *testing.T) {
	t.Parallel()
	conns := 500
	if raceEnabled {
		conns = 200
	}
	u := startFloor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	args := []string{"-url", u, "-conns", strconv.Itoa(conns), "-events-per-s", "5", "-duration", "5s",
		"-grace", "1s", "-churn-per-s", "10", "-workers", "inproc"}
	if err := run(ctx, args, &out, &errb); err != nil {
		t.Fatalf("run: %v\n%s", err, errb.String())
	}
	t.Logf("%s%s", errb.String(), out.String())
	checkLine(t, strings.TrimSpace(out.String()), "loadgen", conns)
	if !strings.Contains(out.String(), " churned=") || strings.Contains(out.String(), " churned=0 ") {
		t.Errorf("no churn counted: %s", out.String())
	}
}

// TestWorkerProcessesAndFloor builds the binary, since workers and the floor
// are re-executions of it, and runs three workers against a floor child and
// the in-process floor standing in for the app.
func TestWorkerProcessesAndFloor(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	gotool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool")
	}
	bin := filepath.Join(t.TempDir(), "loadgen")
	if b, err := exec.Command(gotool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	u := startFloor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "-floor", "-url", u, "-conns", "300", "-per-worker", "100",
		"-events-per-s", "5", "-duration", "2s", "-grace", "1s", "-ramp-per-s", "3000")
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("loadgen: %v\n%s", err, errb.String())
	}
	t.Logf("%s%s", errb.String(), out.String())
	if !strings.Contains(errb.String(), "in 3 worker(s) (process)") {
		t.Errorf("expected three worker processes")
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want the floor's line and the app's, got %q", lines)
	}
	checkLine(t, lines[0], "loadgen-floor", 300)
	checkLine(t, lines[1], "loadgen", 300)
	if strings.Contains(lines[0], "rss_kib_per_conn=-1 ") {
		t.Errorf("the floor child's RSS was not measured: %s", lines[0])
	}
	if !strings.Contains(lines[1], " p99_x_floor=") {
		t.Errorf("the app's line has no comparison with the floor: %s", lines[1])
	}
}

// TestRefusesNonLoopback: any URL off loopback stops the run before a single
// connection is attempted, to any URL of the list.
func TestRefusesNonLoopback(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	good := "http://" + ln.Addr().String()
	for _, bad := range []string{
		"http://10.0.0.1:8080",
		"http://example.com",
		"http://example.com:8080/",
		"http://192.168.1.10",
		"http://[::2]:8080",
		"http://[::ffff:10.0.0.1]:80",
		"http://0.0.0.0:8080",
		"https://127.0.0.1:8443",
		"http://127.0.0.1.example.com",
	} {
		for _, args := range [][]string{
			{"-url", bad},
			{"-url", good + "," + bad},
			{"-url", good, "-url", bad},
		} {
			var out, errb bytes.Buffer
			args = append(args, "-conns", "10", "-duration", "1s", "-workers", "inproc")
			err := run(context.Background(), args, &out, &errb)
			if err == nil || !strings.Contains(err.Error(), "-url") {
				t.Errorf("%q: err = %v, want a refusal", args, err)
			}
			if out.Len() > 0 {
				t.Errorf("%q: printed %q", args, out.String())
			}
		}
	}
	time.Sleep(100 * time.Millisecond)
	if n := accepted.Load(); n > 0 {
		t.Errorf("%d connections reached the loopback server before the refusal", n)
	}
}
