package presence

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"math/big"
	"strings"
)

// UserID is who a browser is: 32 hex digits (upper case) of a SHA-256 over
// that browser's secret. The secret never leaves the cookie, so nobody can
// claim another user's ID. Users are told apart by the whole ID (8 digits
// alone collide: a 4% chance of two merging among 19,000 users); pages show
// only Short.
type UserID string

// Short is the ID as shown: its first 8 hex digits.
func (u UserID) Short() string { return string(u[:min(8, len(u))]) }

// secretLen is the number of random bytes in a browser secret.
const secretLen = 32

// NewSecret returns a fresh browser secret, URL-safe for use in a cookie.
func NewSecret() string {
	b := make([]byte, secretLen)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go ≥ 1.24)
	return base64.RawURLEncoding.EncodeToString(b)
}

// ValidSecret reports whether s has the shape NewSecret produces, so a
// tampered or truncated cookie is replaced rather than trusted.
func ValidSecret(s string) bool {
	if base64.RawURLEncoding.EncodedLen(secretLen) != len(s) {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil && len(b) == secretLen
}

// Profile is how a host site names one of its users (a signed token's
// claims): shown instead of the anonymous ID. Empty for anonymous users.
type Profile struct {
	Name   string `json:"name,omitempty"`
	Avatar string `json:"avatar,omitempty"` // an https URL
}

// IDFromSubject derives the ID of a host site's user from the subject of
// its token: the same on every browser, and never one a cookie derives.
func IDFromSubject(sub string) UserID {
	sum := sha256.Sum256([]byte("sub\x00" + sub))
	return UserID(strings.ToUpper(hex.EncodeToString(sum[:16])))
}

// IDFromSecret derives the public ID of the browser holding secret.
func IDFromSecret(secret string) UserID {
	sum := sha256.Sum256([]byte(secret))
	return UserID(strings.ToUpper(hex.EncodeToString(sum[:16])))
}

// Palette is the fixed set of avatar colours; the page and the stream only
// ever carry one of these names, which map to CSS classes.
var Palette = []string{
	"red", "orange", "amber", "lime", "green", "teal",
	"cyan", "blue", "indigo", "violet", "pink", "slate",
}

// ValidColour reports whether c is in the palette.
func ValidColour(c string) bool {
	for _, p := range Palette {
		if p == c {
			return true
		}
	}
	return false
}

// RandomColour picks a palette colour uniformly at random.
func RandomColour() string {
	n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(Palette))))
	return Palette[n.Int64()]
}

// ColourOf is the colour shown for a user who never chose one on a page
// (a curl client): stable, derived from the ID.
func ColourOf(id UserID) string {
	h := sha256.Sum256([]byte(id))
	return Palette[int(h[0])%len(Palette)]
}
