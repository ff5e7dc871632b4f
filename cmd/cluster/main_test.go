package main

import (
	"context"
	"errors"
	"maps"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"globalpresence/internal/cluster"
)

func TestMain(m *testing.M) {
	code := m.Run()
	cluster.RemoveTestBinary()
	os.Exit(code)
}

// checkTable checks the printed table lists the wanted apps and that every
// PID in it is gone now that run has returned.
func checkTable(t *testing.T, out string, apps ...string) {
	t.Helper()
	if !strings.Contains(out, "Press Ctrl-C to stop.") {
		t.Errorf("no Ctrl-C hint in:\n%s", out)
	}
	seen := map[string]bool{}
	var pids []int
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		pid, err := strconv.Atoi(f[len(f)-1])
		if err != nil {
			continue
		}
		pids = append(pids, pid)
		if strings.HasPrefix(f[2], "http://127.0.0.1:") {
			seen[f[1]] = true
		}
		if f[0] == "primary" || f[0] == "replica" {
			seen[f[0]+" "+f[1]] = true
		}
	}
	for _, a := range apps {
		if !seen[a] {
			t.Errorf("%q not in the table:\n%s", a, out)
		}
	}
	for _, pid := range pids {
		if !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			t.Errorf("pid %d from the table still runs after run returned", pid)
		}
	}
}

func TestRunFor(t *testing.T) {
	bin := cluster.TestBinary(t)
	t.Parallel()
	var stdout, stderr cluster.LogBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	start := time.Now()
	err := run(ctx, []string{"-regions", "ams,syd", "-for", "1s", "-binary", bin, "-dir", t.TempDir(), "--", "-coalesce", "50ms"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	t.Logf("run took %v\n%s", time.Since(start), stdout.String())
	checkTable(t, stdout.String(), "ams-1", "ams-2", "syd-1", "primary ams", "replica ams", "replica syd")
}

func TestRunStopsOnSignal(t *testing.T) {
	bin := cluster.TestBinary(t)
	t.Parallel()
	var stdout, stderr cluster.LogBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-regions", "iad", "-instances", "iad=1", "-latency", "20ms", "-binary", bin}, &stdout, &stderr)
	}()
	deadline := time.After(30 * time.Second)
	for !strings.Contains(stdout.String(), "Press Ctrl-C") {
		select {
		case err := <-done:
			t.Fatalf("run returned before printing the table: %v\n%s", err, stderr.String())
		case <-deadline:
			cancel()
			<-done
			t.Fatalf("no table within 30 s\n%s", stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel() // as SIGINT does through signal.NotifyContext
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after cancel: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not stop within 20 s of the cancel")
	}
	out := stdout.String()
	checkTable(t, out, "iad-1", "primary iad", "replica iad")
	if !strings.Contains(out, "(removed on exit)") {
		t.Errorf("temp dir not announced as removed:\n%s", out)
	}
}

func TestParseInstances(t *testing.T) {
	got, err := parseInstances("", "ams")
	if err != nil || !maps.Equal(got, map[string]int{"ams": 2}) {
		t.Errorf("default = %v, %v", got, err)
	}
	got, err = parseInstances("ams=3, syd=1", "ams")
	if err != nil || !maps.Equal(got, map[string]int{"ams": 3, "syd": 1}) {
		t.Errorf("ams=3, syd=1 = %v, %v", got, err)
	}
	for _, bad := range []string{"ams", "ams=x", "=2", "ams=2,"} {
		if _, err := parseInstances(bad, "ams"); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-instances", "ams"},
		{"-regions", ","},
		{"-no-such-flag"},
	} {
		var out cluster.LogBuffer
		if err := run(context.Background(), args, &out, &out); err == nil {
			t.Errorf("%v: run succeeded", args)
		}
	}
}
