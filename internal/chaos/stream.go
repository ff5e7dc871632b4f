package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// stream is one open GET /events?format=json: one tab of its user.
type stream struct {
	ID       int
	User     *User
	Instance string
	Region   string

	cancel context.CancelFunc
	done   chan struct{} // closed when the reader has ended

	mu       sync.Mutex
	lastTabs int
	closing  bool  // the checker closed it
	endErr   error // why the reader ended
}

// openStream connects and returns once the response headers came, with a
// reader that keeps the last tabs event. o gets the answer.
func openStream(ctx context.Context, id int, u *User, instance, region, base string, o *Op) (*stream, error) {
	sctx, cancel := context.WithCancel(ctx)
	o.Start = time.Now()
	fail := func(err error) (*stream, error) {
		cancel()
		o.End, o.Err = time.Now(), err.Error()
		return nil, err
	}
	req, err := http.NewRequestWithContext(sctx, http.MethodGet, base+"/events?format=json", nil)
	if err != nil {
		return fail(err)
	}
	before := u.secret(base)
	// Only the wait for headers is bounded; the body is read until closed.
	timer := time.AfterFunc(opTimeout, cancel)
	resp, err := u.client.Do(req)
	stopped := timer.Stop()
	if err != nil {
		return fail(err)
	}
	if !stopped {
		resp.Body.Close()
		return fail(errors.New("headers came after the timeout"))
	}
	o.End, o.Status = time.Now(), resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	if after := u.secret(base); after != before {
		// The user's ID would no longer be the one the checker expects.
		resp.Body.Close()
		return fail(errors.New("the app replaced the identity cookie"))
	}
	s := &stream{ID: id, User: u, Instance: instance, Region: region, cancel: cancel, done: make(chan struct{}), lastTabs: -1}
	go func() {
		defer close(s.done)
		defer resp.Body.Close()
		err := s.read(bufio.NewReaderSize(resp.Body, 64<<10))
		s.mu.Lock()
		s.endErr = err
		s.mu.Unlock()
	}()
	return s, nil
}

// read parses server-sent events until the body ends, keeping the data
// of the last tabs event.
func (s *stream) read(r *bufio.Reader) error {
	var event string
	var data strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if event == "tabs" {
				var t struct {
					Tabs int `json:"tabs"`
				}
				if json.Unmarshal([]byte(data.String()), &t) == nil {
					s.mu.Lock()
					s.lastTabs = t.Tabs
					s.mu.Unlock()
				}
			}
			event = ""
			data.Reset()
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
}

// close ends the stream from the client side and waits for its reader.
func (s *stream) close() {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.cancel()
	<-s.done
}

// ended reports whether the stream ended without the checker closing it,
// and why.
func (s *stream) ended() (bool, error) {
	select {
	case <-s.done:
	default:
		return false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closing, s.endErr
}

func (s *stream) tabs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastTabs
}
