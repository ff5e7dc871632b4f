package handlers

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"globalpresence/internal/tokens"
)

func TestParseToken(t *testing.T) {
	key := []byte("shared-secret-of-the-shop")
	now := time.Unix(1_800_000_000, 0)
	const hs256 = `{"alg":"HS256","typ":"JWT"}`
	ok := `{"sub":"customer-42","name":"Ada Lovelace","avatar":"https://cdn.shop.example/a/42.png","exp":1800000600}`

	c, err := parseToken(key, tokens.Sign(hs256, ok, key), now)
	if err != nil || c.Sub != "customer-42" || c.Name != "Ada Lovelace" || c.Avatar != "https://cdn.shop.example/a/42.png" {
		t.Fatalf("valid token: %+v, %v", c, err)
	}
	if _, err := parseToken(key, tokens.Sign(hs256, `{"sub":"7","name":"Bo","exp":1800000600}`, key), now); err != nil {
		t.Fatalf("a token without avatar: %v", err)
	}

	long := strings.Repeat("é", 65)
	for name, tok := range map[string]string{
		"expired":           tokens.Sign(hs256, `{"sub":"a","name":"A","exp":1799999900}`, key),
		"no exp":            tokens.Sign(hs256, `{"sub":"a","name":"A"}`, key),
		"not yet valid":     tokens.Sign(hs256, `{"sub":"a","name":"A","exp":1800000600,"nbf":1800000300}`, key),
		"wrong key":         tokens.Sign(hs256, ok, []byte("another-secret")),
		"alg none":          tokens.Sign(`{"alg":"none","typ":"JWT"}`, ok, nil),
		"alg none signed":   tokens.Sign(`{"alg":"none"}`, ok, key),
		"HS512 header":      tokens.Sign(`{"alg":"HS512"}`, ok, key),
		"unsigned HS256":    tokens.Sign(hs256, ok, nil),
		"tampered claims":   strings.Replace(tokens.Sign(hs256, ok, key), ".", ".eyJzdWIiOiJ4In0", 1),
		"name too long":     tokens.Sign(hs256, `{"sub":"a","name":"`+long+`","exp":1800000600}`, key),
		"empty name":        tokens.Sign(hs256, `{"sub":"a","name":" ","exp":1800000600}`, key),
		"control in name":   tokens.Sign(hs256, `{"sub":"a","name":"A\u0007","exp":1800000600}`, key),
		"no sub":            tokens.Sign(hs256, `{"name":"A","exp":1800000600}`, key),
		"sub too long":      tokens.Sign(hs256, `{"sub":"`+strings.Repeat("s", 257)+`","name":"A","exp":1800000600}`, key),
		"http avatar":       tokens.Sign(hs256, `{"sub":"a","name":"A","avatar":"http://x.example/a.png","exp":1800000600}`, key),
		"javascript avatar": tokens.Sign(hs256, `{"sub":"a","name":"A","avatar":"javascript:alert(1)","exp":1800000600}`, key),
		"oversized claims":  tokens.Sign(hs256, `{"sub":"a","name":"A","exp":1800000600,"pad":"`+strings.Repeat("x", 5000)+`"}`, key),
		"two dots too many": tokens.Sign(hs256, ok, key) + ".x",
		"not a jwt":         "hello",
		"claims not object": tokens.Sign(hs256, `[1]`, key),
		"trailing data":     tokens.Sign(hs256, ok+`{}`, key),
		"sub of wrong type": tokens.Sign(hs256, `{"sub":42,"name":"A","exp":1800000600}`, key),
		"exp of wrong type": tokens.Sign(hs256, `{"sub":"a","name":"A","exp":"tomorrow"}`, key),
		"header not base64": "%%%." + strings.SplitN(tokens.Sign(hs256, ok, key), ".", 2)[1],
		"signature not b64": strings.Join(strings.SplitN(tokens.Sign(hs256, ok, key), ".", 3)[:2], ".") + ".***",
	} {
		if c, err := parseToken(key, tok, now); !errors.Is(err, errToken) {
			t.Errorf("%s: accepted (%+v, %v)", name, c, err)
		}
	}
}

// Whatever a client passes as a token, it is refused with errToken or it was
// signed with the key and its claims are within bounds.
func FuzzToken(f *testing.F) {
	key := []byte("fuzzing-key-fuzzing-key-fuzzing-")
	now := time.Unix(1_800_000_000, 0)
	f.Add(tokens.Sign(`{"alg":"HS256"}`, `{"sub":"a","name":"A","exp":1800000600}`, key))
	f.Add(tokens.Sign(`{"alg":"none"}`, `{"sub":"a","name":"A","exp":1800000600}`, nil))
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := parseToken(key, tok, now)
		if err != nil {
			if !errors.Is(err, errToken) {
				t.Fatalf("refused without errToken: %v", err)
			}
			return
		}
		head, body, _ := strings.Cut(tok, ".")
		body, _, _ = strings.Cut(body, ".")
		if tokens.Sign(mustDecode(t, head), mustDecode(t, body), key) != tok {
			t.Fatalf("accepted a token not signed with the key: %q", tok)
		}
		if c.Sub == "" || utf8.RuneCountInString(c.Name) > maxNameRunes || (c.Avatar != "" && !strings.HasPrefix(c.Avatar, "https://")) {
			t.Fatalf("accepted claims out of bounds: %+v", c)
		}
	})
}

func mustDecode(t *testing.T, seg string) string {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatalf("accepted a token with an undecodable part %q", seg)
	}
	return string(b)
}
