package handlers

import (
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
)

// A POST is answered in one of three ways: htmx gets a fragment (or
// nothing), a browser posting a plain form (JavaScript off) is sent back to
// the page, and everything else (curl, scripts) gets JSON.

// wantsPage reports whether a request came from a browser itself, not
// htmx: a plain form post or a navigation, whose Accept prefers HTML. curl's
// */* does not.
func wantsPage(c echo.Context) bool {
	return !isHTMX(c) && prefersHTML(c.Request().Header.Get("Accept"))
}

func isHTMX(c echo.Context) bool { return c.Request().Header.Get("HX-Request") == "true" }

// prefersHTML reports whether text/html is named in accept with a quality
// no other listed type beats.
func prefersHTML(accept string) bool {
	best, html := 0.0, 0.0
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(part)
		if err != nil {
			continue
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			if q, err = strconv.ParseFloat(v, 64); err != nil {
				continue
			}
		}
		if mt == "text/html" {
			html = q
		}
		best = max(best, q)
	}
	return html > 0 && html >= best
}

// backToPage answers a plain form post: 303 See Other to the room's page,
// where the change shows.
func backToPage(c echo.Context) error {
	return c.Redirect(http.StatusSeeOther, pageURL(roomOf(c)))
}

// pageURL is where a room's page is. A room whose last segment is "events"
// needs the trailing slash, or its page would read as its stream.
func pageURL(room string) string {
	if room == DefaultRoom {
		return "/"
	}
	if path.Base(room) == "events" {
		return "/rooms/" + room + "/"
	}
	return "/rooms/" + room
}
