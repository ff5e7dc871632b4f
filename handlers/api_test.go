package handlers

import (
	"net/http"
	"testing"
)

// Without PRESENCE_API_KEY the integration API answers only to loopback
// addresses, as the socket gives them: a proxy's headers claiming loopback
// change nothing.
func TestAPIWithoutKeyOnlyOnLoopback(t *testing.T) {
	s := newTestServer(t, Limits{})
	spoofed := http.Header{"X-Forwarded-For": {"127.0.0.1"}, "Fly-Client-Ip": {"127.0.0.1"}}
	for _, target := range []string{"/api/rooms", "/api/users/0123456789ABCDEF0123456789ABCDEF/rooms"} {
		for addr, want := range map[string]int{
			"127.0.0.1:1234":      http.StatusOK,
			"127.9.9.9:1234":      http.StatusOK,
			"[::1]:1234":          http.StatusOK,
			"[::ffff:7f00:1]:123": http.StatusOK,
			"192.0.2.1:1234":      http.StatusForbidden,
			"[2001:db8::1]:1234":  http.StatusForbidden,
			"[::ffff:c000:201]:1": http.StatusForbidden,
		} {
			if got := serve(s, http.MethodGet, target, addr, spoofed, ""); got != want {
				t.Errorf("GET %s from %s: %d, want %d", target, addr, got, want)
			}
		}
	}
	// A room's own state stays public.
	if got := serve(s, http.MethodGet, "/api/rooms/home", "192.0.2.1:1234", nil, ""); got != http.StatusOK {
		t.Errorf("a room's state from afar: %d, want 200", got)
	}
}
