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
	user := s.identify(c)
	room := roomOf(c)
	snap, tabs, err := s.snapshot(c.Request().Context(), room, user)
	if err != nil {
		return err
	}
	colour := presence.RandomColour()
	data := pageData{
		You: youView{
			ID:     user.Short(),
			Colour: colour,
			Edge:   place(edgeRegion(c, s.cfg.Region)),
			App:    place(s.cfg.Region),
			Base:   roomBase(room),
		},
		State: newStateView(snap, s.cfg.Region),
		// This page's own stream is about to connect: count it already.
		Tabs:      tabs + 1,
		EventsURL: roomBase(room) + "/events?" + url.Values{"colour": {colour}}.Encode(),
	}
	var buf bytes.Buffer
	if err := s.cfg.Templates.ExecuteTemplate(&buf, "page", data); err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.HTMLBlob(http.StatusOK, buf.Bytes())
}
