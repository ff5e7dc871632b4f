package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"globalpresence/presence"
)

// maxBody bounds every POST body; a "hi" needs a few hundred bytes at most.
const maxBody = 4 << 10

// params reads a POST's fields from a form or a flat JSON object in its
// body; the query string is not read, so a link's tracking parameters
// neither act nor fail. Anything else with a body is refused rather than
// ignored, so a mistyped request never acts as an empty one (an empty
// toggle would still flip the light).
func params(c echo.Context, allowed ...string) (url.Values, error) {
	req := c.Request()
	if req.ContentLength > maxBody {
		return nil, echo.NewHTTPError(http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", maxBody))
	}
	req.Body = http.MaxBytesReader(c.Response(), req.Body, maxBody)
	ctype, mparams, _ := mime.ParseMediaType(req.Header.Get("Content-Type"))
	var vals url.Values
	var err error
	switch ctype {
	case "application/json":
		vals, err = jsonFields(req.Body)
	case "application/x-www-form-urlencoded", "":
		if ctype == "" && req.ContentLength != 0 {
			return nil, echo.NewHTTPError(http.StatusUnsupportedMediaType, "send a form or JSON body")
		}
		vals, err = formFields(req.Body)
	case "multipart/form-data":
		vals, err = multipartFields(req.Body, mparams["boundary"])
	default:
		return nil, echo.NewHTTPError(http.StatusUnsupportedMediaType, "send a form or JSON body")
	}
	if err != nil {
		return nil, err
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

func formFields(body io.Reader) (url.Values, error) {
	b, err := io.ReadAll(body)
	if err != nil {
		return nil, bodyError(err, "malformed form body")
	}
	vals, err := url.ParseQuery(string(b))
	if err != nil {
		return nil, echo.NewHTTPError(http.StatusBadRequest, "malformed form body")
	}
	return vals, nil
}

func multipartFields(body io.Reader, boundary string) (url.Values, error) {
	if boundary == "" {
		return nil, echo.NewHTTPError(http.StatusBadRequest, "malformed form body")
	}
	form, err := multipart.NewReader(body, boundary).ReadForm(maxBody)
	if err != nil {
		return nil, bodyError(err, "malformed form body")
	}
	defer form.RemoveAll()
	if len(form.File) > 0 {
		return nil, echo.NewHTTPError(http.StatusBadRequest, "files are not accepted")
	}
	return form.Value, nil
}

// jsonFields reads a flat JSON object of strings. encoding/json alone would
// take invalid UTF-8 and lone surrogate escapes ("\ud800") as U+FFFD, and a
// repeated key as its last value; all are refused, as in a form.
func jsonFields(body io.Reader) (url.Values, error) {
	notFlat := echo.NewHTTPError(http.StatusBadRequest, "body must be a JSON object of strings")
	b, err := io.ReadAll(body)
	if err != nil {
		return nil, bodyError(err, notFlat.Message.(string))
	}
	if !utf8.Valid(b) || loneSurrogate(b) {
		return nil, echo.NewHTTPError(http.StatusBadRequest, "body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, notFlat
	}
	vals := url.Values{}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return nil, notFlat
		}
		key, _ := k.(string) // an object's keys are strings
		v, err := dec.Token()
		val, ok := v.(string)
		if err != nil || !ok {
			return nil, notFlat
		}
		if vals.Has(key) {
			return nil, echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("field %q given more than once", key))
		}
		vals.Set(key, val)
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, notFlat
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, echo.NewHTTPError(http.StatusBadRequest, "body must hold one JSON object")
	}
	return vals, nil
}

// loneSurrogate reports whether JSON text escapes half of a UTF-16
// surrogate pair without the other half.
func loneSurrogate(b []byte) bool {
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		i++ // the escaped byte: a second backslash escapes nothing
		if i >= len(b) || b[i] != 'u' {
			continue
		}
		r := rune(hex4(b[i+1:]))
		if !utf16.IsSurrogate(r) {
			continue
		}
		// Only a high half followed by an escaped low half is whole.
		next := b[i+5:]
		if len(next) < 6 || next[0] != '\\' || next[1] != 'u' || utf16.DecodeRune(r, rune(hex4(next[2:]))) == unicode.ReplacementChar {
			return true
		}
		i += 10
	}
	return false
}

// hex4 is the value of the 4 hex digits b starts with, or -1.
func hex4(b []byte) int {
	if len(b) < 4 {
		return -1
	}
	n, err := strconv.ParseUint(string(b[:4]), 16, 16)
	if err != nil {
		return -1
	}
	return int(n)
}

func bodyError(err error, msg string) error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return echo.NewHTTPError(http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", maxBody))
	}
	if errors.Is(err, os.ErrDeadlineExceeded) { // the server's read timeout
		return echo.NewHTTPError(http.StatusRequestTimeout, "the body did not arrive in time")
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
