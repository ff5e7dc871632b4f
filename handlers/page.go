package handlers

import (
	"bytes"
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"

	"globalpresence/presence"
)

// page serves the whole page, server-rendered with the current state; the
// stream then keeps it live.
func (s *Server) page(c echo.Context) error {
	room := roomOf(c)
	v, err := s.viewOf(c, room)
	if err != nil {
		return err
	}
	data := pageData{
		You:       v.you,
		State:     newStateView(v.snap, s.cfg.Region),
		Tabs:      v.tabs,
		EventsURL: v.eventsURL(HTML),
		Large:     s.cfg.Broadcaster.large,
		Nonce:     newNonce(),
	}
	return s.servePage(c, "page", data, withHTMXEval(withStyleNonce(s.csp, data.Nonce)))
}

// servePage renders a whole page of the room's current state, never to be
// cached, under its own Content-Security-Policy.
func (s *Server) servePage(c echo.Context, name string, data any, csp string) error {
	var buf bytes.Buffer
	if err := s.cfg.Templates.ExecuteTemplate(&buf, name, data); err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", csp)
	return c.HTMLBlob(http.StatusOK, buf.Bytes())
}

// viewing is what a page or an embed of a room is rendered from.
type viewing struct {
	you  youView
	snap presence.Snapshot
	tabs int // the viewer's, counting the stream about to connect
}

// viewOf reads the room for a page load, whose stream gets a colour of its
// own.
func (s *Server) viewOf(c echo.Context, room string) (viewing, error) {
	you, err := s.identify(c, c.QueryParam("token"))
	if err != nil {
		return viewing{}, err
	}
	user := you.ID
	snap, tabs, err := s.snapshot(c.Request().Context(), room, user)
	if err != nil {
		return viewing{}, err
	}
	return viewing{
		you: youView{
			ID:     user.Short(),
			Colour: presence.RandomColour(),
			Edge:   place(edgeRegion(c, s.cfg.Region)),
			App:    place(s.cfg.Region),
			Base:   roomBase(room),
			Name:   you.Name,
			Avatar: you.Avatar,
			Token:  you.Token,
		},
		snap: snap,
		// This page's own stream is about to connect: count it already.
		tabs: tabs + 1,
	}, nil
}

// eventsURL is the stream the page opens, in format f.
func (v viewing) eventsURL(f Format) string {
	q := url.Values{"colour": {v.you.Colour}}
	if v.you.Token != "" {
		q.Set("token", v.you.Token)
	}
	if f == Badge {
		q.Set("format", "badge")
	}
	return v.you.Base + "/events?" + q.Encode()
}
