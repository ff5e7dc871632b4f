package handlers

import (
	"bytes"
	"net/http"

	"github.com/labstack/echo/v4"

	"globalpresence/presence"
)

// hi posts a message: "Hi from <city> 👋" unless a text is given.
func (s *Server) hi(c echo.Context) error {
	vals, err := params(c, "text", "colour", "token")
	if err != nil {
		return err
	}
	text, err := checkText(vals.Get("text"), presence.MaxTextLen)
	if err != nil {
		return err
	}
	you, err := s.identify(c, vals.Get("token"))
	if err != nil {
		return err
	}
	user, known := you.ID, you.Known
	colour := vals.Get("colour")
	switch {
	case colour == "":
		colour = presence.ColourOf(user)
	case !presence.ValidColour(colour):
		return echo.NewHTTPError(http.StatusBadRequest, "unknown colour")
	}
	if err := s.limit(c, s.hiLimit, user, known, "messages"); err != nil {
		return err
	}
	from := edgeRegion(c, s.cfg.Region)
	if text == "" {
		text = "Hi from " + presence.City(from) + " 👋"
	}
	msg, err := s.cfg.Store.Say(c.Request().Context(), roomOf(c), presence.Post{User: user, Colour: colour, From: from, Text: text, Profile: you.Profile})
	if err != nil {
		return err
	}
	switch {
	case isHTMX(c):
		// A fresh, empty form replaces the one that was sent.
		var buf bytes.Buffer
		if err := s.cfg.Templates.ExecuteTemplate(&buf, "hi-form", youView{Colour: colour, Base: roomBase(roomOf(c)), Token: you.Token}); err != nil {
			return err
		}
		return c.HTMLBlob(http.StatusCreated, buf.Bytes())
	case wantsPage(c):
		return backToPage(c)
	}
	return c.JSON(http.StatusCreated, newMessageView(msg))
}
