package handlers

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"

	"globalpresence/presence"
)

// state returns the whole room as JSON.
func (s *Server) state(c echo.Context) error {
	if err := s.crossOriginRead(c, false); err != nil {
		return err
	}
	snap, _, err := s.snapshot(c.Request().Context(), roomOf(c), "")
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newStateView(snap, s.cfg.Region))
}

// snapshot is a room's state for a request, and user's tab count in it.
// Presence, the part whose cost grows with the room (every tab grouped by
// user), is taken as the broadcaster last rendered it when the room has
// streams here: at most one coalescing interval old, as every stream sees
// it. The other parts are read: they cost the same at any size, and a
// request then sees its own writes at once.
func (s *Server) snapshot(ctx context.Context, room string, user presence.UserID) (presence.Snapshot, int, error) {
	regions, tabs, held := s.cfg.Broadcaster.Presence(room, user)
	parts := presence.AllParts
	if held {
		parts &^= presence.PartPresence
	}
	snap, err := s.cfg.Store.Snapshot(ctx, room, parts)
	if err != nil {
		return snap, 0, err
	}
	if held {
		snap.Regions = regions
	} else {
		tabs = presence.TabCounts(snap.Regions)[user]
	}
	return snap, tabs, nil
}
