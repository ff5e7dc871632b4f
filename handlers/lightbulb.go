package handlers

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"globalpresence/presence"
)

// lightbulb toggles the light, or sets it with state=on|off.
func (s *Server) lightbulb(c echo.Context) error {
	vals, err := params(c, "state", "token")
	if err != nil {
		return err
	}
	you, err := s.identify(c, vals.Get("token"))
	if err != nil {
		return err
	}
	user, known := you.ID, you.Known
	sw := presence.Switch{By: user, From: edgeRegion(c, s.cfg.Region)}
	if sw.Set, err = switchState(vals.Get("state")); err != nil {
		return err
	}
	if err := s.limit(c, s.lightLimit, user, known, "switches"); err != nil {
		return err
	}
	l, err := s.cfg.Store.Switch(c.Request().Context(), roomOf(c), sw)
	if err != nil {
		return err
	}
	switch {
	case isHTMX(c):
		return c.NoContent(http.StatusNoContent)
	case wantsPage(c):
		return backToPage(c)
	}
	return c.JSON(http.StatusOK, newLightView(l))
}
