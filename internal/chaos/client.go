package chaos

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"time"
)

const (
	// opTimeout bounds one write or read; a request to a stopped
	// instance ends here, as ambiguous.
	opTimeout = 5 * time.Second
	// cookieName is the app's identity cookie.
	cookieName = "gp_secret"
	// maxBody is how much of an answer the history keeps.
	maxBody = 4 << 10
)

// User is one simulated browser: its own cookie jar, so the app sees one
// identity across requests, streams and instances (cookies ignore ports).
type User struct {
	ID     string // the app's public ID for the cookie's secret
	jar    http.CookieJar
	client *http.Client
}

// newUser makes a user whose secret comes from rng, so a seed replays the
// same users. The app accepts any 32-byte base64url secret and derives the
// ID as the first 8 upper-case hex digits of its SHA-256 (README, "Who you
// are"); openStream checks that the app kept the cookie.
func newUser(rng *rand.Rand, base string, transport http.RoundTripper) *User {
	b := make([]byte, 32)
	rng.Read(b)
	secret := base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(secret))
	jar, _ := cookiejar.New(nil)
	u, _ := url.Parse(base)
	jar.SetCookies(u, []*http.Cookie{{Name: cookieName, Value: secret, Path: "/"}})
	return &User{
		ID:     strings.ToUpper(hex.EncodeToString(sum[:4])),
		jar:    jar,
		client: &http.Client{Jar: jar, Transport: transport},
	}
}

// secret is the cookie the jar holds for base.
func (u *User) secret(base string) string {
	pu, _ := url.Parse(base)
	for _, c := range u.jar.Cookies(pu) {
		if c.Name == cookieName {
			return c.Value
		}
	}
	return ""
}

// post sends a form (nil: no body) and fills o's answer.
func (u *User) post(ctx context.Context, base, path string, form url.Values, o *Op) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	o.Start = time.Now()
	defer func() { o.End = time.Now() }()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, body)
	if err != nil {
		o.Err = err.Error()
		return
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := u.client.Do(req)
	if err != nil {
		o.Err = err.Error()
		return
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	o.Status, o.Body = resp.StatusCode, strings.TrimSpace(string(b))
	if err != nil {
		// The status came but the body broke off: the client cannot be
		// sure what it was told.
		o.Err = "reading the answer: " + err.Error()
	}
}

// getState reads an instance's /api/state.
func getState(ctx context.Context, client *http.Client, base string) (State, error) {
	var s State
	err := getJSON(ctx, client, base, "/api/state", &s)
	return s, err
}

// getRooms reads an instance's /api/rooms (on loopback: no key needed).
func getRooms(ctx context.Context, client *http.Client, base string) ([]RoomCount, error) {
	var r struct {
		Rooms []RoomCount `json:"rooms"`
	}
	err := getJSON(ctx, client, base, "/api/rooms?limit=1000", &r)
	return r.Rooms, err
}

// getJSON reads a JSON answer of an instance into v.
func getJSON(ctx context.Context, client *http.Client, base, path string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// readyStatus asks an instance's /readyz once: its status, or 0 when it
// did not answer.
func readyStatus(ctx context.Context, client *http.Client, base string) int {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
	if err != nil {
		return 0
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
