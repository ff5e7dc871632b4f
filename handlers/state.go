package handlers

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"globalpresence/presence"
)

// state returns the whole room as JSON.
func (s *Server) state(c echo.Context) error {
	if err := s.crossOriginRead(c, false); err != nil {
		return err
	}
	snap, err := s.cfg.Store.Snapshot(c.Request().Context(), roomOf(c), presence.AllParts)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newStateView(snap, s.cfg.Region))
}
