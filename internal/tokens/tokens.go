// Package tokens makes the signed tokens a host site gives its users (JWT,
// HS256), for tests and examples: the server only verifies them.
package tokens

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
)

// Sign makes a JWT with header and claims as given (JSON), signed with
// HS256 under key, or unsigned (empty signature) when key is nil.
func Sign(header, claims string, key []byte) string {
	enc := base64.RawURLEncoding.EncodeToString
	s := enc([]byte(header)) + "." + enc([]byte(claims))
	if key == nil {
		return s + "."
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(s))
	return s + "." + enc(mac.Sum(nil))
}

// For signs claims as a host site would, with the standard HS256 header.
func For(claims map[string]any, key []byte) string {
	b, err := json.Marshal(claims)
	if err != nil {
		panic(err) // claims of plain values always marshal
	}
	return Sign(`{"alg":"HS256","typ":"JWT"}`, string(b), key)
}
