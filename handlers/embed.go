package handlers

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"

	"globalpresence/presence"
	"globalpresence/static"
)

// Other sites show a room's presence in two ways: an iframe of
// /embed/{room}, or <global-presence room="…"> rendered by /embed.js in a
// shadow root. Both show the badge format of the room's stream.

// EmbedOrigins are the sites allowed to embed rooms: framing /embed/… and
// reading the rooms' streams and JSON across origins. Empty means this
// origin only.
type EmbedOrigins struct {
	any  bool
	list []string
}

// ParseEmbedOrigins reads -embed-origins: "*", or comma-separated origins
// such as https://shop.example (scheme, host and port only).
func ParseEmbedOrigins(s string) (EmbedOrigins, error) {
	var o EmbedOrigins
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		switch {
		case f == "":
			continue
		case f == "*":
			o.any = true
			continue
		}
		u, err := url.Parse(f)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			return EmbedOrigins{}, fmt.Errorf("embed origin %q: want scheme://host[:port], such as https://shop.example", f)
		}
		o.list = append(o.list, u.Scheme+"://"+strings.ToLower(u.Host))
	}
	return o, nil
}

// Configured reports whether any other site may embed.
func (o EmbedOrigins) Configured() bool { return o.any || len(o.list) > 0 }

func (o EmbedOrigins) allows(origin string) bool {
	if o.any {
		return true
	}
	for _, a := range o.list {
		if strings.EqualFold(a, origin) {
			return true
		}
	}
	return false
}

func (o EmbedOrigins) frameAncestors() string {
	if o.any {
		return "*"
	}
	return strings.TrimSpace("'self' " + strings.Join(o.list, " "))
}

// crossOriginRead lets an allowed site read a room's stream or JSON with
// the visitor's cookie. A stream opened from a site not allowed is refused
// outright: the browser would hide it from the page, yet it would count as
// a viewer. Browsers send Origin on cross-origin reads only.
func (s *Server) crossOriginRead(c echo.Context, stream bool) error {
	origin := c.Request().Header.Get("Origin")
	if origin == "" || origin == s.ownOrigin(c) {
		return nil
	}
	h := c.Response().Header()
	h.Add("Vary", "Origin")
	if !s.cfg.EmbedOrigins.allows(origin) {
		if stream {
			return echo.NewHTTPError(http.StatusForbidden, "this site may not embed rooms (see -embed-origins)")
		}
		return nil
	}
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
	return nil
}

func (s *Server) ownOrigin(c echo.Context) string {
	scheme := "http"
	if isHTTPS(c, s.cfg.TrustProxy) {
		scheme = "https"
	}
	return scheme + "://" + c.Request().Host
}

type embedData struct {
	You       youView
	State     stateView
	Badge     badgeView
	Tabs      badgeTabs
	EventsURL string
	RoomURL   string
	Feed      bool
	Theme     string
	Nonce     string
}

// embed serves /embed/{room}: the badge alone, to be framed by other sites;
// ?feed=1 adds the say-hi feed and its form, ?theme=light|dark picks the
// colours (default: the visitor's preference).
func (s *Server) embed(c echo.Context) error {
	q := c.QueryParams()
	feed, theme := q.Get("feed"), q.Get("theme")
	if feed != "" && feed != "0" && feed != "1" {
		return echo.NewHTTPError(http.StatusBadRequest, "feed must be 0 or 1")
	}
	if theme != "" && theme != "light" && theme != "dark" {
		return echo.NewHTTPError(http.StatusBadRequest, "theme must be light or dark")
	}
	room := strings.TrimSuffix(c.Param("*"), "/")
	if !presence.ValidRoom(room) {
		return errBadRoom
	}
	v, err := s.viewOf(c, room)
	if err != nil {
		return err
	}
	data := embedData{
		You:       v.you,
		State:     newStateView(v.snap, s.cfg.Region),
		Badge:     newBadgeView(v.snap.Regions, len(presence.TabCounts(v.snap.Regions))),
		Tabs:      badgeTabs{ID: v.you.ID, Tabs: v.tabs},
		EventsURL: v.eventsURL(Badge),
		RoomURL:   cmp.Or(roomBase(room), "/"),
		Feed:      feed == "1",
		Theme:     theme,
		Nonce:     newNonce(),
	}
	// Framing is the point here; who may frame is -embed-origins. The
	// nonce admits the one inline rule that marks the viewer's avatar.
	c.Response().Header().Del("X-Frame-Options")
	return s.servePage(c, "embed", data, strings.Replace(withStyleNonce(s.csp, data.Nonce),
		"frame-ancestors 'none'", "frame-ancestors "+s.cfg.EmbedOrigins.frameAncestors(), 1))
}

// embedScript builds /embed.js: the custom element, with the badge's
// stylesheet inlined so it makes one request.
func embedScript() ([]byte, error) {
	js, err := static.FS.ReadFile("embed.js")
	if err != nil {
		return nil, err
	}
	css, err := static.FS.ReadFile("badge.css")
	if err != nil {
		return nil, err
	}
	quoted, err := json.Marshal(string(css))
	if err != nil {
		return nil, err
	}
	const slot = "__BADGE_CSS__"
	if !bytes.Contains(js, []byte(slot)) {
		return nil, fmt.Errorf("embed.js lacks %s", slot)
	}
	return bytes.Replace(js, []byte(slot), quoted, 1), nil
}

// serveEmbedScript serves /embed.js to any site: it is public code; what
// it may read is decided by the streams' CORS.
func serveEmbedScript(js []byte) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Cache-Control", "public, max-age=300")
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Cross-Origin-Resource-Policy", "cross-origin")
		return c.Blob(http.StatusOK, "text/javascript; charset=utf-8", js)
	}
}
