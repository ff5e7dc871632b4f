package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestRefusesNonLoopbackAddr(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "10.0.0.1:0", "[::]:0", "example.com:80"} {
		if err := run(context.Background(), []string{"-addr", addr}, io.Discard, io.Discard); err == nil {
			t.Errorf("-addr %s accepted", addr)
		}
	}
}

// TestServesAStreamAndAMessage: a stream gets the snapshot, then the posted
// message; the server stops by itself after -for.
func TestServesAStreamAndAMessage(t *testing.T) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- run(context.Background(), []string{"-for", "3s"}, pw, io.Discard) }()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	base := strings.TrimSpace(strings.TrimPrefix(line, "floor: listening on "))

	resp, err := http.Get(base + "/events?format=json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	post, err := http.PostForm(base+"/hi", url.Values{"text": {"lg:t:1:2"}})
	if err != nil {
		t.Fatal(err)
	}
	post.Body.Close()
	if post.StatusCode != http.StatusCreated {
		t.Errorf("POST /hi: %s", post.Status)
	}
	var got bytes.Buffer
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() && !strings.Contains(got.String(), `"text":"lg:t:1:2"`) {
		got.WriteString(sc.Text() + "\n")
	}
	for _, want := range []string{"event: light\n", "event: regions\n", "event: tabs\n", `"text":"lg:t:1:2"`} {
		if !strings.Contains(got.String(), want) {
			t.Errorf("stream lacks %q:\n%s", want, got.String())
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(10 * time.Second):
		t.Error("the floor did not stop after -for")
	}
}
