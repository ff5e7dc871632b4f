package handlers

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// A site that embeds rooms may name its users: it signs a JWT (HS256) with
// the secret it shares with us (IDENTITY_SECRET), and the page, stream or
// embed carries it as ?token=. Nothing else is accepted: no other
// algorithm, no unsigned token, no token without an expiry.

const (
	maxToken     = 4 << 10 // bytes; a token only carries a few short claims
	maxNameRunes = 64
	maxSubject   = 256
	maxAvatarURL = 2048
	tokenLeeway  = 30 // seconds of clock skew allowed on exp and nbf
)

// claims are what a token may say about its user.
type claims struct {
	Sub    string   `json:"sub"`
	Name   string   `json:"name"`
	Avatar string   `json:"avatar"`
	Exp    *float64 `json:"exp"`
	Nbf    *float64 `json:"nbf"`
}

var errToken = errors.New("invalid token")

// parseToken checks a token signed with secret and returns its claims.
func parseToken(secret []byte, token string, now time.Time) (claims, error) {
	fail := func(why string) (claims, error) { return claims{}, fmt.Errorf("%w: %s", errToken, why) }
	if len(token) > maxToken {
		return fail(fmt.Sprintf("longer than %d bytes", maxToken))
	}
	head, rest, ok := strings.Cut(token, ".")
	body, sig, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || strings.Contains(sig, ".") {
		return fail("not a JWT (three dot-separated parts)")
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if err := decodeSegment(head, &h); err != nil {
		return fail("unreadable header")
	}
	if h.Alg != "HS256" {
		return fail(fmt.Sprintf("alg %q: only HS256 is accepted", h.Alg))
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return fail("unreadable signature")
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(head + "." + body))
	if !hmac.Equal(got, mac.Sum(nil)) {
		return fail("bad signature")
	}
	var c claims
	if err := decodeSegment(body, &c); err != nil {
		return fail("unreadable claims")
	}
	at := float64(now.Unix())
	switch {
	case c.Exp == nil:
		return fail("no exp claim")
	case *c.Exp+tokenLeeway < at:
		return fail("expired")
	case c.Nbf != nil && *c.Nbf-tokenLeeway > at:
		return fail("not valid yet (nbf)")
	case c.Sub == "" || len(c.Sub) > maxSubject || !utf8.ValidString(c.Sub):
		return fail(fmt.Sprintf("sub must be 1-%d bytes of UTF-8", maxSubject))
	}
	name, err := checkText(c.Name, maxNameRunes)
	if err != nil || name == "" {
		return fail(fmt.Sprintf("name must be 1-%d characters of text", maxNameRunes))
	}
	c.Name = name
	if c.Avatar != "" && !httpsURL(c.Avatar) {
		return fail("avatar must be an https URL")
	}
	return c, nil
}

// decodeSegment reads one base64url JSON part of a token, strictly: one
// object, nothing after it.
func decodeSegment(seg string, v any) error {
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the object")
	}
	return nil
}

// httpsURL accepts an absolute https URL with a host and no credentials.
func httpsURL(s string) bool {
	if len(s) > maxAvatarURL {
		return false
	}
	u, err := url.Parse(s)
	return err == nil && u.Scheme == "https" && u.Host != "" && u.User == nil && u.Opaque == ""
}
