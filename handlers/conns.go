package handlers

import (
	"net"
	"net/http"
	"sync"

	"globalpresence/internal/shrink"
)

// connCap caps the connections one client address (an IPv6 /64) holds
// open, streams aside: a stream leaves the count once it is hijacked, as
// the stream cap counts it from then on. Without it, a client that sends
// headers and then trickles its body, or idles, holds a descriptor per
// connection until the timeouts, and enough of them use up the process's
// file limit: the instance then accepts no one. A connection over the cap
// is closed before its first request is read.
type connCap struct {
	perClient int

	mu       sync.Mutex
	byClient map[string]int
	counted  map[net.Conn]string
}

func newConnCap(perClient int) *connCap {
	return &connCap{perClient: perClient, byClient: make(map[string]int), counted: make(map[net.Conn]string)}
}

// track is the http.Server's ConnState hook.
func (cc *connCap) track(c net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		key := clientKey(host)
		cc.mu.Lock()
		over := cc.byClient[key] >= cc.perClient
		if !over {
			cc.byClient[key]++
			cc.counted[c] = key
		}
		cc.mu.Unlock()
		if over {
			c.Close()
		}
	case http.StateHijacked, http.StateClosed:
		cc.mu.Lock()
		defer cc.mu.Unlock()
		key, ok := cc.counted[c]
		if !ok {
			return
		}
		shrink.Delete(&cc.counted, c)
		if cc.byClient[key]--; cc.byClient[key] <= 0 {
			shrink.Delete(&cc.byClient, key)
		}
	}
}

// open is how many connections are counted now.
func (cc *connCap) open() int {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return len(cc.counted)
}

// TrackConn is the http.Server's ConnState hook: it caps each client
// address's connections (Limits.ConnsPerClient). Behind a trusted proxy
// every connection comes from the proxy, so there is no cap: the request
// and body deadlines still bound each connection.
func (s *Server) TrackConn(c net.Conn, st http.ConnState) {
	if !s.cfg.TrustProxy {
		s.conns.track(c, st)
	}
}
