package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"globalpresence/internal/cluster"
)

// startLimited runs the app binary as a process of its own, allowed at most
// nofile open files, and stops it (SIGTERM, then SIGKILL) when the test
// ends, even on failure. It returns the app's URL and process ID.
func startLimited(t *testing.T, nofile int, args ...string) (string, int) {
	t.Helper()
	bin := cluster.TestBinary(t)
	cmd := exec.Command("prlimit", fmt.Sprintf("--nofile=%d:%d", nofile, nofile), "--", bin, "-addr", "127.0.0.1:0")
	cmd.Args = append(cmd.Args, args...)
	logs := &cluster.LogBuffer{}
	cmd.Stderr = logs
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // prlimit execs the app: same PID
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("the app's log:\n%s", logs)
		}
	})
	lines := bufio.NewScanner(out)
	url := ""
	for url == "" && lines.Scan() {
		if _, after, ok := strings.Cut(lines.Text(), "listening on "); ok {
			url, _, _ = strings.Cut(after, " ")
		}
	}
	go func() {
		_, _ = io.Copy(io.Discard, out)
		_ = cmd.Wait()
		close(done)
	}()
	if url == "" {
		t.Fatalf("the app did not start:\n%s", logs)
	}
	return url, cmd.Process.Pid
}

// clientFrom is an HTTP client whose connections come from the loopback
// address ip, one per request.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

// 1,000 connections from one address that send a POST's headers and then
// nothing: the instance, limited to 256 open files, keeps serving other
// clients' pages at once and their streams, and ends every slow
// connection, over the per-address cap at once and the rest after
// -read-timeout.
func TestSlowBodiesExhaustNothing(t *testing.T) {
	base, pid := startLimited(t, 256, "-read-timeout", "3s")
	addr := strings.TrimPrefix(base, "http://")
	var slow []net.Conn
	t.Cleanup(func() {
		for _, c := range slow {
			c.Close()
		}
	})
	for range 1000 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		slow = append(slow, c)
		// Fails once the server has closed it: that is the point.
		_, _ = fmt.Fprintf(c, "POST /hi HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ntext=", addr)
	}

	other := clientFrom("127.0.0.2")
	var took []time.Duration
	for i := range 30 {
		start := time.Now()
		resp, err := other.Get(base + "/")
		if err != nil {
			t.Fatalf("page load %d from another address during the attack: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		took = append(took, time.Since(start))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("page load %d: %d", i, resp.StatusCode)
		}
	}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	slices.Sort(took)
	median := took[len(took)/2]
	t.Logf("30 page loads from another address during the attack: median %v, slowest %v; the app held %d files", median, took[len(took)-1], len(fds))
	if median > 100*time.Millisecond {
		t.Fatalf("page loads took %v at the median during the attack", median)
	}
	resp, err := clientFrom("127.0.0.3").Get(base + "/events?format=json")
	if err != nil {
		t.Fatalf("a stream from another address during the attack: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a stream from another address during the attack: %d", resp.StatusCode)
	}

	// Every slow connection ends: refused at once, or answered 408 once
	// its body is late.
	ends := map[string]int{}
	deadline := time.Now().Add(20 * time.Second)
	for _, c := range slow {
		_ = c.SetReadDeadline(deadline)
		got, err := io.ReadAll(c)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			t.Fatalf("a slow connection was still open 20 s later (ends so far: %v)", ends)
		case bytes.HasPrefix(got, []byte("HTTP/1.1 408 ")):
			ends["408"]++
		default:
			ends["closed"]++
		}
	}
	t.Logf("the 1,000 slow connections ended: %v", ends)
	if ends["408"] == 0 {
		t.Fatal("no slow connection was answered 408")
	}
}
