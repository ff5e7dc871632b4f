package handlers

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"globalpresence/presence"
)

// Every parser of client input is fuzzed: whatever arrives, the answer is a
// value that satisfies the rules or a 4xx, never a panic or a 5xx.

func wantClientError(t *testing.T, err error) {
	t.Helper()
	var he *echo.HTTPError
	if !errors.As(err, &he) || he.Code < 400 || he.Code > 499 {
		t.Fatalf("want a 4xx, got %v", err)
	}
}

func FuzzParams(f *testing.F) {
	f.Add("application/x-www-form-urlencoded", []byte("text=hi&colour=teal"))
	f.Add("application/json", []byte(`{"text":"hi"}`))
	f.Add("application/json", []byte(`{"text":5}`))
	f.Add("multipart/form-data; boundary=x", []byte("--x\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nhi\r\n--x--\r\n"))
	f.Add("", []byte(""))
	f.Add("text/plain", []byte("state=on"))
	f.Add("application/x-www-form-urlencoded", []byte("text=%zz&text=2"))
	f.Add("application/json", []byte(`{"text":"\ud83d\udc4b","colour":"\ud800"}`))
	f.Add("application/json", []byte(`{"text":"a","te\u0078t":"b"}`))
	f.Add("application/json", []byte("{\"text\":\"\xed\xa0\x80\"}"))
	f.Fuzz(func(t *testing.T, ctype string, body []byte) {
		// The query is never a field: it must not show in what is accepted.
		req := httptest.NewRequest(http.MethodPost, "/hi?text=from-the-query", bytes.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		c := echo.New().NewContext(req, httptest.NewRecorder())
		vals, err := params(c, "text", "colour")
		if err != nil {
			wantClientError(t, err)
			return
		}
		for k, v := range vals {
			if (k != "text" && k != "colour") || len(v) != 1 {
				t.Fatalf("accepted field %q = %q", k, v)
			}
		}
		if vals.Get("text") == "from-the-query" && !bytes.Contains(body, []byte("query")) {
			t.Fatalf("the query's text was taken from body %q", body)
		}
		if ctype == "application/json" && strings.ContainsRune(strings.Join(append(vals["text"], vals["colour"]...), ""), utf8.RuneError) &&
			!bytes.Contains(bytes.ToLower(body), []byte(`\ufffd`)) && !bytes.ContainsRune(body, utf8.RuneError) {
			t.Fatalf("JSON %q was taken with a replacement character", body)
		}
	})
}

func FuzzCheckText(f *testing.F) {
	for _, s := range []string{"", "hi", " padded ", strings.Repeat("é", 141), "a\rb", "\xff", "👋🏽"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := checkText(s, presence.MaxTextLen)
		if err != nil {
			wantClientError(t, err)
			return
		}
		if !utf8.ValidString(got) || utf8.RuneCountInString(got) > presence.MaxTextLen || strings.IndexFunc(got, unicode.IsControl) >= 0 || strings.ContainsRune(got, '\u202e') {
			t.Fatalf("accepted %q", got)
		}
	})
}

func FuzzStreamQuery(f *testing.F) {
	for _, q := range []string{"", "format=json", "format=xml", "colour=teal", "colour=%3Cb%3E", "format=json&format=html", "%zz"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return // the server gets the same from echo: an empty query
		}
		format, colour, err := streamParams(q)
		if err != nil {
			wantClientError(t, err)
			return
		}
		if format >= numFormats || !presence.ValidColour(colour) {
			t.Fatalf("accepted format %d colour %q", format, colour)
		}
	})
}

func FuzzSwitchState(f *testing.F) {
	for _, s := range []string{"", "on", "off", "toggle", "ON", "dim"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		set, err := switchState(s)
		if err != nil {
			wantClientError(t, err)
			return
		}
		if (set == nil) != (s == "" || s == "toggle") {
			t.Fatalf("state %q gave %v", s, set)
		}
	})
}

// The identity cookie: whatever a client sends, it is either a valid secret
// (and yields an ID of 32 upper-case hex digits) or replaced by a new one.
func FuzzIdentityCookie(f *testing.F) {
	f.Add(presence.NewSecret())
	f.Add("")
	f.Add("not a secret")
	f.Add(strings.Repeat("A", 43))
	f.Fuzz(func(t *testing.T, value string) {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.AddCookie(&http.Cookie{Name: cookieName, Value: value})
		rec := httptest.NewRecorder()
		s := &Server{}
		you, err := s.identify(echo.New().NewContext(req, rec), "")
		id := you.ID
		if err != nil {
			t.Fatal(err)
		}
		if len(id) != 32 || strings.Trim(string(id), "0123456789ABCDEF") != "" {
			t.Fatalf("id %q", id)
		}
		sent := "" // what reaches the server after net/http's own cookie sanitising
		if ck, err := req.Cookie(cookieName); err == nil {
			sent = ck.Value
		}
		reissued := rec.Header().Get("Set-Cookie") != ""
		if reissued == presence.ValidSecret(sent) {
			t.Fatalf("cookie %q (sent as %q): reissued=%v", value, sent, reissued)
		}
	})
}
