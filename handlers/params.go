package handlers

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"globalpresence/presence"
)

// maxBody bounds every POST body; a "hi" needs a few hundred bytes at most.
const maxBody = 4 << 10

// params reads a POST's fields from a form or a flat JSON object. Anything
// else with a body is refused rather than ignored, so a mistyped request
// never acts as an empty one (an empty toggle would still flip the light).
func params(c echo.Context, allowed ...string) (url.Values, error) {
	req := c.Request()
	if req.ContentLength > maxBody {
		return nil, echo.NewHTTPError(http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", maxBody))
	}
	req.Body = http.MaxBytesReader(c.Response(), req.Body, maxBody)
	ctype, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type"))
	var vals url.Values
	switch ctype {
	case "application/json":
		fields := map[string]string{}
		dec := json.NewDecoder(req.Body)
		if err := dec.Decode(&fields); err != nil {
			return nil, bodyError(err, "body must be a JSON object of strings")
		}
		if dec.More() {
			return nil, echo.NewHTTPError(http.StatusBadRequest, "body must hold one JSON object")
		}
		vals = url.Values{}
		for k, v := range fields {
			vals.Set(k, v)
		}
	case "application/x-www-form-urlencoded", "multipart/form-data", "":
		if ctype == "" && req.ContentLength > 0 {
			return nil, echo.NewHTTPError(http.StatusUnsupportedMediaType, "send a form or JSON body")
		}
		var err error
		if vals, err = c.FormParams(); err != nil {
			return nil, bodyError(err, "malformed form body")
		}
	default:
		return nil, echo.NewHTTPError(http.StatusUnsupportedMediaType, "send a form or JSON body")
	}
	for k, v := range vals {
		if !slices.Contains(allowed, k) {
			return nil, echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("unknown field %q", k))
		}
		if len(v) > 1 {
			return nil, echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("field %q given more than once", k))
		}
	}
	return vals, nil
}

func bodyError(err error, msg string) error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return echo.NewHTTPError(http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", maxBody))
	}
	return echo.NewHTTPError(http.StatusBadRequest, msg)
}

// checkText validates a message text: valid UTF-8, no control characters, at
// most max characters after trimming surrounding space.
func checkText(s string, maxLen int) (string, error) {
	if !utf8.ValidString(s) {
		return "", echo.NewHTTPError(http.StatusBadRequest, "text is not valid UTF-8")
	}
	s = strings.TrimSpace(s)
	if n := utf8.RuneCountInString(s); n > maxLen {
		return "", echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("text is %d characters, at most %d allowed", n, maxLen))
	}
	if strings.IndexFunc(s, forbiddenRune) >= 0 {
		return "", echo.NewHTTPError(http.StatusBadRequest, "text must not contain control or bidirectional override characters")
	}
	return s, nil
}

// forbiddenRune rejects control characters and the bidirectional embedding,
// override and isolate controls, which would let a message reorder how the
// text around it is displayed.
func forbiddenRune(r rune) bool {
	return unicode.IsControl(r) || (r >= '\u202a' && r <= '\u202e') || (r >= '\u2066' && r <= '\u2069')
}

// switchState reads a lightbulb request's state: nil toggles.
func switchState(state string) (*bool, error) {
	switch state {
	case "", "toggle":
		return nil, nil
	case "on", "off":
		on := state == "on"
		return &on, nil
	}
	return nil, echo.NewHTTPError(http.StatusBadRequest, "state must be on, off or toggle")
}

// streamParams reads a stream's query: its format and the colour of the page
// that opened it (a random one when absent; only palette names pass).
func streamParams(q url.Values) (Format, string, error) {
	format := HTML
	switch q.Get("format") {
	case "", "html":
	case "json":
		format = JSON
	case "badge":
		format = Badge
	default:
		return 0, "", echo.NewHTTPError(http.StatusBadRequest, "format must be html, json or badge")
	}
	colour := q.Get("colour")
	switch {
	case colour == "":
		colour = presence.RandomColour()
	case !presence.ValidColour(colour):
		return 0, "", echo.NewHTTPError(http.StatusBadRequest, "unknown colour")
	}
	return format, colour, nil
}
