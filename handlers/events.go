package handlers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"globalpresence/bus"
	"globalpresence/presence"
)

// events streams a room: a full snapshot first (a fresh EventSource sends no
// Last-Event-ID, so every connection must start from the whole state), then
// every change. The connection is one open tab for presence.
func (s *Server) events(c echo.Context) error {
	format, colour, err := streamParams(c.QueryParams())
	if err != nil {
		return err
	}
	client := c.RealIP()
	if why := s.streams.acquire(client); why != "" {
		return echo.NewHTTPError(http.StatusTooManyRequests, why)
	}
	defer s.streams.release(client)
	user := s.identify(c)
	ctx := c.Request().Context()

	sub, snapshot, err := s.cfg.Broadcaster.Attach(ctx, DefaultRoom, user, format)
	if err != nil {
		return err
	}
	defer s.cfg.Broadcaster.Detach(DefaultRoom, user, sub)

	tab := presence.Tab{ID: newTabID(), User: user, Colour: colour, Region: s.cfg.Region, Since: time.Now()}
	if err := s.cfg.Store.Join(ctx, DefaultRoom, tab); err != nil {
		// The stream still serves what is known; the store catches up
		// with this tab when it is back.
		s.cfg.Log.Warn("registering a tab", "err", err)
	}
	defer func() {
		// The request context is already cancelled when the client left.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := s.cfg.Store.Leave(lctx, DefaultRoom, tab.ID); err != nil {
			s.cfg.Log.Warn("removing a closed tab", "tab", tab.ID, "err", err)
		}
	}()

	w := c.Response()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // no proxy buffering of the stream
	w.WriteHeader(http.StatusOK)

	out := newStreamWriter(w.Writer, s.cfg.WriteTimeout)
	buf := append([]byte(nil), bus.Retry(s.cfg.Retry)...)
	for _, frame := range snapshot {
		buf = append(buf, frame...)
	}
	var pending []bus.Event
	for {
		if err := out.write(buf); err != nil {
			return nil // the client is gone; nothing to answer
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.stopping:
			return nil
		case <-sub.Done():
			return nil // evicted: too slow; it reconnects to a fresh snapshot
		case <-sub.Ready():
		}
		pending = sub.Take(pending[:0])
		buf = buf[:0]
		for _, ev := range pending {
			buf = append(buf, ev.Frame...)
		}
	}
}

// streamWriter writes a batch of frames and flushes it as one write, giving
// up on a client whose socket accepts nothing for the timeout: it is gone or
// stuck, and must not hold its goroutine forever.
type streamWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func newStreamWriter(w http.ResponseWriter, timeout time.Duration) streamWriter {
	return streamWriter{w: w, rc: http.NewResponseController(w), timeout: timeout}
}

func (s streamWriter) write(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if err := s.rc.SetWriteDeadline(time.Now().Add(s.timeout)); err != nil {
		return err
	}
	if _, err := s.w.Write(b); err != nil {
		return err
	}
	return s.rc.Flush()
}

func newTabID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
