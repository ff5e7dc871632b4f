// Package floor is the benchmark floor: the least an SSE fan-out can cost on
// this machine. Each stream is hijacked and kept as a bare net.Conn with no
// goroutine of its own; an event is framed once and written to every
// connection with one Write each, by one goroutine per shard. The load
// generator measures it beside the app, so the app's figures can be read as
// a multiple of what the hardware allows.
package floor

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// writeTimeout drops a connection whose socket accepts nothing for this long,
// so one stuck client cannot stall its shard for ever.
const writeTimeout = 5 * time.Second

// keep is how many messages a messages event carries, as in the app.
const keep = 10

type message struct {
	ID     string `json:"id"`
	User   string `json:"user"`
	Colour string `json:"colour"`
	Region string `json:"region"`
	From   string `json:"from"`
	City   string `json:"city"`
	Text   string `json:"text"`
	At     string `json:"at"`
}

// Server is the floor's state: the open streams, split into shards written in
// parallel, and the newest messages.
type Server struct {
	// mu serialises joins and broadcasts, so every connection gets events in
	// the same order and a snapshot is never overtaken by an older event.
	mu     sync.Mutex
	shards [][]net.Conn
	next   int
	msgs   []message
	seq    int
	on     bool
}

// New returns an empty floor with one shard per CPU.
func New() *Server {
	return &Server{shards: make([][]net.Conn, runtime.GOMAXPROCS(0))}
}

// Serve answers on ln until it is closed, then closes every stream.
func Serve(ln net.Listener) error {
	s := New()
	defer s.Close()
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	return srv.Serve(ln)
}

// Close ends every held stream.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, sh := range s.shards {
		for _, c := range sh {
			c.Close()
		}
		s.shards[i] = nil
	}
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/events":
		s.stream(w)
	case r.Method == http.MethodPost && r.URL.Path == "/hi":
		text := r.PostFormValue("text")
		if utf8.RuneCountInString(text) > 140 {
			http.Error(w, `{"error":"text too long"}`, http.StatusBadRequest)
			return
		}
		m := s.say(text)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(m)
	case r.Method == http.MethodPost && r.URL.Path == "/lightbulb":
		on := s.flip()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, "{\"on\":%t}\n", on)
	default:
		http.NotFound(w, r)
	}
}

// stream hijacks the connection, writes the header and a snapshot in one
// write, and keeps only the net.Conn: the handler's goroutine then ends.
func (s *Server) stream(w http.ResponseWriter) {
	c, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nConnection: close\r\n\r\nretry: 2000\n\n")
	b = appendEvent(b, "light", fmt.Sprintf(`{"on":%t}`, s.on))
	b = appendEvent(b, "regions", `{"regions":[]}`)
	b = appendEvent(b, "messages", s.messagesJSON())
	b = appendEvent(b, "tabs", `{"tabs":1}`)
	_ = c.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := c.Write(b); err != nil {
		c.Close()
		return
	}
	s.shards[s.next] = append(s.shards[s.next], c)
	s.next = (s.next + 1) % len(s.shards)
}

func (s *Server) say(text string) message {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	now := time.Now().UTC()
	m := message{
		ID: strconv.FormatInt(now.UnixNano(), 16) + "-floor-" + strconv.Itoa(s.seq), User: "00000000",
		Colour: "teal", Region: "local", From: "local", City: "Local", Text: text, At: now.Format(time.RFC3339Nano),
	}
	s.msgs = append([]message{m}, s.msgs[:min(len(s.msgs), keep-1)]...)
	s.broadcast(appendEvent(nil, "messages", s.messagesJSON()))
	return m
}

func (s *Server) flip() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.on = !s.on
	s.broadcast(appendEvent(nil, "light", fmt.Sprintf(`{"on":%t}`, s.on)))
	return s.on
}

func (s *Server) messagesJSON() string {
	b, _ := json.Marshal(struct {
		Messages []message `json:"messages"`
	}{append([]message{}, s.msgs...)})
	return string(b)
}

// broadcast writes frame to every connection, one goroutine per shard and
// one Write per connection; a failed write drops the connection. s.mu held.
func (s *Server) broadcast(frame []byte) {
	deadline := time.Now().Add(writeTimeout)
	var wg sync.WaitGroup
	for i := range s.shards {
		wg.Go(func() {
			kept := s.shards[i][:0]
			for _, c := range s.shards[i] {
				_ = c.SetWriteDeadline(deadline)
				if _, err := c.Write(frame); err != nil {
					c.Close()
					continue
				}
				kept = append(kept, c)
			}
			clear(s.shards[i][len(kept):])
			s.shards[i] = kept
		})
	}
	wg.Wait()
}

func appendEvent(b []byte, name, data string) []byte {
	return append(append(append(append(append(b, "event: "...), name...), "\ndata: "...), data...), "\n\n"...)
}
