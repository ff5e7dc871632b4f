package handlers

import (
	"net/http"
	"strings"
	"unique"

	"github.com/labstack/echo/v4"

	"globalpresence/presence"
)

// Every page is a room. /rooms/{room} serves what / serves for the room
// "home": the page, and below it /events, /lightbulb and /hi; the JSON
// state is /api/rooms/{room}. A room name may hold slashes, so the action
// is told by the method and the last segment: a room whose own last
// segment is "events" has its page at /rooms/{room}/ (trailing slash).

const roomKey = "room"

// roomOf is the room a request is about: set by the rooms routes, else the
// room of the legacy routes.
func roomOf(c echo.Context) string {
	if room, ok := c.Get(roomKey).(string); ok {
		return room
	}
	return DefaultRoom
}

// roomBase is the URL prefix of a room's routes.
func roomBase(room string) string {
	if room == DefaultRoom {
		return ""
	}
	return "/rooms/" + room
}

var errBadRoom = echo.NewHTTPError(http.StatusBadRequest,
	`a room name is 1-128 characters of A-Z a-z 0-9 . _ ~ - / with no empty, "." or ".." segment`)

// withRoom checks a room name from the path and hands the request to h.
func withRoom(c echo.Context, name string, h echo.HandlerFunc) error {
	if !presence.ValidRoom(name) {
		return errBadRoom
	}
	// One copy of the name per room: the path is a slice of the request's
	// first line, which a stream would otherwise keep for its whole life.
	c.Set(roomKey, unique.Make(name).Value())
	return h(c)
}

// roomGet serves a room's page or its stream.
func (s *Server) roomGet(c echo.Context) error {
	path := c.Param("*")
	if room, ok := strings.CutSuffix(path, "/events"); ok {
		return withRoom(c, room, s.events)
	}
	return withRoom(c, strings.TrimSuffix(path, "/"), s.page)
}

// roomPost takes a room's switches and messages.
func (s *Server) roomPost(c echo.Context) error {
	path := c.Param("*")
	if room, ok := strings.CutSuffix(path, "/lightbulb"); ok {
		return withRoom(c, room, s.lightbulb)
	}
	if room, ok := strings.CutSuffix(path, "/hi"); ok {
		return withRoom(c, room, s.hi)
	}
	return echo.NewHTTPError(http.StatusNotFound, "POST /rooms/{room}/lightbulb or /rooms/{room}/hi")
}

// roomState is a room's JSON state.
func (s *Server) roomState(c echo.Context) error {
	return withRoom(c, c.Param("*"), s.state)
}
