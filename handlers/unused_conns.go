package handlers

import (
	"net"
	"net/http"
	"sync"

	"globalpresence/internal/shrink"
)

// UnusedConns lets graceful shutdown close connections that never sent a
// request. http.Server.Shutdown counts those as busy for their first 5
// seconds, and HTTP clients open such spare connections whenever they race
// dials against reuse, so one of them alone would use up the whole grace
// period. Closing one is as safe as closing an idle keep-alive connection:
// the client retries on a fresh one.
type UnusedConns struct {
	mu      sync.Mutex
	closing bool
	unused  map[net.Conn]struct{}
}

// Track is the http.Server's ConnState hook.
func (u *UnusedConns) Track(c net.Conn, st http.ConnState) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if st != http.StateNew {
		if u.unused != nil {
			shrink.Delete(&u.unused, c)
		}
		return
	}
	if u.closing {
		c.Close()
		return
	}
	if u.unused == nil {
		u.unused = map[net.Conn]struct{}{}
	}
	u.unused[c] = struct{}{}
}

// Close closes every connection still waiting for its first request, and
// each one accepted from now on.
func (u *UnusedConns) Close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closing = true
	for c := range u.unused {
		c.Close()
	}
	clear(u.unused)
}
