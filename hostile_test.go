package main

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawExchange sends raw bytes and returns the status code of the answer (0
// if the server just closed the connection).
func rawExchange(addr string, req []byte) int {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return -1
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(req); err != nil {
		return 0
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// hostileRequests are malformed, oversized or nonsensical requests; each
// must get a 4xx (or a closed connection), never a 5xx.
func hostileRequests(host string, i int) []byte {
	big := strings.Repeat("x", 8000)
	junk := make([]byte, 64)
	for k := range junk {
		junk[k] = byte(rand.IntN(256))
	}
	switch i % 16 {
	case 0:
		return append(junk, "\r\n\r\n"...)
	case 1:
		return []byte("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
	case 2:
		return []byte("POST /hi HTTP/1.1\r\nHost: " + host + "\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 9000\r\n\r\ntext=" + big)
	case 3:
		return []byte("POST /hi HTTP/1.1\r\nHost: " + host + "\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nzz\r\n{}\r\n0\r\n\r\n")
	case 4:
		return []byte("GET /" + strings.Repeat("a", 20000) + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n")
	case 5:
		return []byte("GET / HTTP/1.1\r\nHost: " + host + "\r\nX-Big: " + strings.Repeat("h", 1<<20+10) + "\r\n\r\n")
	case 6:
		return []byte("POST /lightbulb HTTP/1.1\r\nHost: " + host + "\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"state\":[]")
	case 7:
		return []byte("POST /lightbulb HTTP/1.1\r\nHost: " + host + "\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10\r\n\r\nstate=%ff%")
	case 8:
		return []byte("GET /events?format=%00 HTTP/1.1\r\nHost: " + host + "\r\n\r\n")
	case 9:
		return []byte("GET /events?colour=%22onmouseover%3D HTTP/1.1\r\nHost: " + host + "\r\n\r\n")
	case 10:
		return []byte("PUT /hi HTTP/1.1\r\nHost: " + host + "\r\nContent-Length: 0\r\n\r\n")
	case 11:
		return []byte("POST /hi HTTP/1.1\r\nHost: " + host + "\r\nContent-Type: multipart/form-data; boundary=\r\nContent-Length: 5\r\n\r\n--\r\n\r")
	case 12:
		return []byte("POST /hi HTTP/1.1\r\nHost: " + host + "\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 17\r\n\r\ntext=%E2%80%AEabc\x07")
	case 13:
		return []byte("POST /lightbulb HTTP/1.1\r\nHost: " + host + "\r\nCookie: gp_secret=" + big[:100] + "\r\nContent-Type: text/xml\r\nContent-Length: 3\r\n\r\n<a>")
	case 14:
		return []byte("POST /hi HTTP/1.1\r\nHost: " + host + "\r\nSec-Fetch-Site: cross-site\r\nContent-Length: 0\r\n\r\n")
	default:
		return []byte("GET /api/state HTTP/1.1\r\nHost: " + host + "\r\nContent-Length: -1\r\n\r\n")
	}
}

// 10,000 hostile requests and 1,000 streams dropped mid-way: afterwards the
// server answers normally, holds nothing for them, and its state is as it
// was.
func TestHostileClients(t *testing.T) {
	a := startApp(t, nil, "-streams-per-client", "2000", "-conns-per-client", "2000")
	addr := strings.TrimPrefix(a.URL, "http://")
	var before map[string]any
	getJSON(t, a.URL+"/api/state", &before)
	http.DefaultClient.CloseIdleConnections()
	runtime.GC()
	base := runtime.NumGoroutine()

	const requests, workers = 10000, 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for w := range workers {
		wg.Go(func() {
			for i := w; i < requests; i += workers {
				code := rawExchange(addr, hostileRequests(addr, i))
				mu.Lock()
				codes[code]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	t.Logf("answers to %d hostile requests (status: count, 0 = closed): %v", requests, codes)
	for code, n := range codes {
		if code >= 500 || code == -1 || (code > 0 && code < 400) {
			t.Fatalf("%d hostile requests got %d", n, code)
		}
	}

	// 1,000 streams that leave abruptly: before the headers are read, after
	// a few bytes, or with a reset.
	for w := range workers {
		wg.Go(func() {
			for i := w; i < 1000; i += workers {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Error(err)
					return
				}
				fmt.Fprintf(c, "GET /events?format=json HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
				if i%3 > 0 {
					_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
					_, _ = io.ReadFull(c, make([]byte, 50+i%400))
				}
				if i%2 == 0 {
					_ = c.(*net.TCPConn).SetLinger(0) // RST instead of FIN
				}
				c.Close()
			}
		})
	}
	wg.Wait()

	deadline := time.Now().Add(15 * time.Second)
	for {
		var after map[string]any
		getJSON(t, a.URL+"/api/state", &after)
		http.DefaultClient.CloseIdleConnections()
		n := runtime.NumGoroutine()
		if fmt.Sprint(after) == fmt.Sprint(before) && n <= base+2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the abuse: %d goroutines (baseline %d); state\n%v\nwas\n%v", n, base, after, before)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// And it still works for everyone else.
	s := openStream(t, a.URL, nil, "/events?format=json")
	s.waitFor(t, "tabs", func(string) bool { return true })
	postTo(t, a.URL, "/lightbulb", nil)
	s.waitFor(t, "light", contains(`"on":true`))
}

// A client that never reads is dropped once its socket stops accepting,
// while everyone else keeps getting every event.
func TestStuckClientIsDropped(t *testing.T) {
	a := startApp(t, nil, "-write-timeout", "1s", "-hi-rate", "100000", "-hi-burst", "100000")
	addr := strings.TrimPrefix(a.URL, "http://")
	stuck, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	_ = stuck.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(stuck, "GET /events HTTP/1.1\r\nHost: %s\r\n\r\n", addr)

	reader := openStream(t, a.URL, nil, "/events?format=json")
	reader.waitFor(t, "tabs", func(string) bool { return true })
	open := func() string {
		resp, err := http.Get(a.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "gp_sse_connections "); ok {
				return v
			}
		}
		return "?"
	}
	if n := open(); n != "2" {
		t.Fatalf("%s streams open, want 2", n)
	}
	// Messages of ~3 KiB each until the stuck socket's buffers are full and
	// the server gives up on it; the reading client must get each one.
	client := &http.Client{Timeout: 10 * time.Second}
	long := strings.Repeat("w", 130)
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; ; i++ {
		text := fmt.Sprintf("%06d%s", i, long)
		if code, _ := post(t, client, a.URL+"/hi", map[string][]string{"text": {text}}); code != http.StatusCreated {
			t.Fatalf("post %d: %d", i, code)
		}
		reader.waitFor(t, "messages", contains(text))
		if i%50 == 49 && open() == "1" {
			t.Logf("the stuck client was dropped after %d messages; the other got every one", i+1)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stuck client was not dropped after %d messages", i+1)
		}
	}
}

// Shutdown under load: 1,000 open streams and posts in flight; every stream
// is ended and the server is gone within 5 s.
func TestShutdownUnderLoad(t *testing.T) {
	a := startApp(t, nil, "-streams-per-client", "2000", "-conns-per-client", "2000", "-hi-rate", "100000", "-hi-burst", "100000")
	addr := strings.TrimPrefix(a.URL, "http://")
	var ended sync.WaitGroup
	for range 1000 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		fmt.Fprintf(c, "GET /events HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
		ended.Go(func() {
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, _ = io.Copy(io.Discard, c) // returns when the server ends the stream
		})
	}
	stop := make(chan struct{})
	var posting sync.WaitGroup
	posting.Go(func() {
		client := &http.Client{Timeout: 2 * time.Second}
		for {
			select {
			case <-stop:
				return
			default:
			}
			if resp, err := client.PostForm(a.URL+"/hi", nil); err == nil {
				resp.Body.Close()
			}
		}
	})
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	if err := a.stop(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	close(stop)
	posting.Wait()
	done := make(chan struct{})
	go func() { ended.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("streams still open 5 s after shutdown returned")
	}
	took := time.Since(start)
	t.Logf("shut down with 1,000 streams open in %v", took)
	if took > 5*time.Second {
		t.Fatalf("shutdown took %v", took)
	}
}
