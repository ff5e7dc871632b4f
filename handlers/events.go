package handlers

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"globalpresence/bus"
	"globalpresence/presence"
)

// events streams a room: a full snapshot first (a fresh EventSource sends no
// Last-Event-ID, so every connection must start from the whole state), then
// every change. The connection is one open tab for presence.
//
// Once the request is checked and the tab registered, the connection is
// hijacked and handed to the hub, which streams to it without a goroutine
// of its own; this handler returns at once, and the access log records the
// stream as a 200 then. Everything it set up is undone when the hub reports
// the stream ended.
func (s *Server) events(c echo.Context) error {
	format, colour, err := streamParams(c.QueryParams())
	if err != nil {
		return err
	}
	if err := s.crossOriginRead(c, true); err != nil {
		return err
	}
	w := c.Response()
	streamHeaders(w.Header())
	if c.Request().Method == http.MethodHead {
		return c.NoContent(http.StatusOK)
	}
	you, err := s.identify(c, c.QueryParam("token"))
	if err != nil {
		return err
	}
	user := you.ID
	client := clientKey(c.RealIP())
	if why := s.streams.acquire(client); why != "" {
		return echo.NewHTTPError(http.StatusTooManyRequests, why)
	}
	ctx := c.Request().Context()

	room := roomOf(c)
	sub, snapshot, err := s.cfg.Broadcaster.Attach(ctx, room, user, format)
	if err != nil {
		s.streams.release(client)
		return err
	}
	tab := presence.Tab{ID: newTabID(), User: user, Colour: colour, Region: s.cfg.Region, Since: time.Now(), Profile: you.Profile}
	if err := s.cfg.Store.Join(ctx, room, tab); err != nil {
		// The stream still serves what is known; the store catches up
		// with this tab when it is back.
		s.cfg.Log.Warn("registering a tab", "err", err)
	}

	st := &openStream{s: s, room: room, user: user, format: format, sub: sub, tab: tab.ID, client: client,
		id: w.Header().Get(echo.HeaderXRequestID), start: time.Now()}
	if err := ctx.Err(); err != nil {
		st.ended(err) // the client left already; nothing to answer
		return nil
	}

	// Bytes the client sent after the request stay in the returned reader,
	// unread: a stream has nothing to say to them.
	conn, _, err := http.NewResponseController(w.Writer).Hijack()
	if err != nil {
		st.ended(err)
		return err
	}
	// The server's read and write deadlines bound requests, not streams:
	// the hub times out a stream's writes itself.
	if err := conn.SetDeadline(time.Time{}); err != nil {
		conn.Close()
		st.ended(err)
		return nil
	}
	head := streamHead(w.Header(), s.cfg.Retry)
	// For the access log, metrics and error handler: a 200 went out.
	w.Status, w.Size, w.Committed = http.StatusOK, int64(len(head)), true
	s.hub.Serve(conn, append([][]byte{head}, snapshot...), sub, st.ended)
	s.settle.opened()
	return nil
}

func streamHeaders(h http.Header) {
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // no proxy buffering of the stream
}

// openStream is what a stream must undo when it ends. It is kept for the
// stream's whole life, so it holds only that (not the echo.Context, which
// Echo recycles when the handler returns).
type openStream struct {
	s      *Server
	room   string
	user   presence.UserID
	format Format
	sub    *bus.Subscriber
	tab    string
	client string
	id     string // request ID, for the log
	start  time.Time
}

// ended runs once, when the hub reports the stream over, on a goroutine of
// its own: a Leave may take a store round trip.
func (st *openStream) ended(why error) {
	s := st.s
	s.cfg.Broadcaster.Detach(st.room, st.user, st.format, st.sub)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := s.cfg.Store.Leave(ctx, st.room, st.tab); err != nil {
		s.cfg.Log.Warn("removing a closed tab", "tab", st.tab, "err", err)
	}
	cancel()
	s.streams.release(st.client)
	s.settle.ended()
	s.cfg.Log.Info("stream ended", "id", st.id, "ms", time.Since(st.start).Milliseconds(), "client", st.client, "why", why)
}

// notInStreamHead are the headers a hijacked stream sets itself, or must
// not send: its body is the event stream until the connection closes, with
// no length and no chunking.
var notInStreamHead = map[string]bool{"Connection": true, "Content-Length": true, "Transfer-Encoding": true, "Keep-Alive": true}

// streamHead is the response head of a stream, written by hand since the
// connection is hijacked: every header set so far (the stream's own, the
// security headers, the request ID, an identity cookie), then the retry
// advice that starts every stream.
func streamHead(h http.Header, retry time.Duration) []byte {
	b := headBuffers.Get().(*bytes.Buffer)
	defer headBuffers.Put(b)
	b.Reset()
	b.WriteString("HTTP/1.1 200 OK\r\n")
	if h.Get("Date") == "" {
		h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	_ = h.WriteSubset(b, notInStreamHead) // a bytes.Buffer does not fail
	b.WriteString("Connection: close\r\n\r\n")
	b.Write(bus.Retry(retry))
	// The head waits in the hub until the socket takes it: no spare room.
	return bytes.Clone(b.Bytes())
}

var headBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func newTabID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
