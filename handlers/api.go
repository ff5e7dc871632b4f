package handlers

import (
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"globalpresence/presence"
)

// The integration API, for the backends of the sites that embed us: which
// rooms are occupied, and which rooms a user is in. Answered from the
// store's membership index in memory (presence.Occupancy): never a scan.
// It tells who is where, so it needs the API key (PRESENCE_API_KEY); with
// none configured it answers only on loopback.

const (
	defaultRoomsLimit = 100
	maxRoomsLimit     = 1000
)

var (
	roomPrefix = regexp.MustCompile(`^[A-Za-z0-9._~/-]{0,128}$`)
	fullUserID = regexp.MustCompile(`^[0-9A-Fa-f]{32}$`)
)

// integration guards an API handler with the key rule and hands it the
// store's membership index.
func (s *Server) integration(h func(echo.Context, presence.Occupancy) error) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := authorizeAPI(c.Request(), s.cfg.APIKey); err != nil {
			return err
		}
		occ, ok := s.cfg.Store.(presence.Occupancy)
		if !ok {
			return echo.NewHTTPError(http.StatusNotImplemented, "this store keeps no membership index")
		}
		c.Response().Header().Set("Cache-Control", "no-store")
		return h(c, occ)
	}
}

// authorizeAPI decides whether r may use the integration API: with a key
// configured, it must bring it as a bearer token (compared in constant
// time); without one, it must come from loopback, by its socket's address
// (headers can claim anything).
func authorizeAPI(r *http.Request, key string) error {
	if key == "" {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if a, perr := netip.ParseAddr(host); err == nil && perr == nil && a.Unmap().IsLoopback() {
			return nil
		}
		return echo.NewHTTPError(http.StatusForbidden,
			"this API answers only on loopback: set PRESENCE_API_KEY to use it from elsewhere, with Authorization: Bearer <key>")
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || got == "" {
		return echo.NewHTTPError(http.StatusUnauthorized, "this API needs Authorization: Bearer <PRESENCE_API_KEY>")
	}
	// Hashed first, so that the comparison takes as long whatever the
	// length of the guess.
	want, have := sha256.Sum256([]byte(key)), sha256.Sum256([]byte(got))
	if subtle.ConstantTimeCompare(want[:], have[:]) != 1 {
		return echo.NewHTTPError(http.StatusUnauthorized, "wrong API key")
	}
	return nil
}

// roomsList answers GET /api/rooms?prefix=P&limit=N: the occupied rooms,
// most viewers first.
func (s *Server) roomsList(c echo.Context, occ presence.Occupancy) error {
	limit := defaultRoomsLimit
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxRoomsLimit {
			return echo.NewHTTPError(http.StatusBadRequest, "limit is a whole number from 1 to 1000 (default 100)")
		}
		limit = n
	}
	prefix := c.QueryParam("prefix")
	if !roomPrefix.MatchString(prefix) {
		return echo.NewHTTPError(http.StatusBadRequest, "prefix is the start of a room name: up to 128 characters of A-Z a-z 0-9 . _ ~ - /")
	}
	return c.JSON(http.StatusOK, struct {
		Rooms []presence.RoomCount `json:"rooms"`
	}{occ.Occupied(prefix, limit)})
}

// userRooms answers GET /api/users/{user}/rooms: the rooms a user is in.
func (s *Server) userRooms(c echo.Context, occ presence.Occupancy) error {
	id := c.Param("user")
	if !fullUserID.MatchString(id) {
		return echo.NewHTTPError(http.StatusBadRequest, "a user is named by their full ID: 32 hex digits")
	}
	user := presence.UserID(strings.ToUpper(id))
	rooms := occ.UserRooms(user)
	if rooms == nil {
		rooms = []string{}
	}
	return c.JSON(http.StatusOK, struct {
		User  presence.UserID `json:"user"`
		Rooms []string        `json:"rooms"`
	}{user, rooms})
}
