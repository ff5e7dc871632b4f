package loadgen

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// Target is one instance under test, checked to be on loopback.
type Target struct {
	Addr string // host:port to dial, an IP literal
	Host string // the Host header, as the user wrote it
	Base string // scheme://host:port plus any path prefix, for POSTs
	Path string // the stream's request path
	V4   bool   // in 127.0.0.0/8: source addresses can be spread over it
}

// parseTarget accepts only http URLs whose host is an IP literal in
// 127.0.0.0/8 or ::1, or "localhost" (taken as 127.0.0.1 without asking a
// resolver). Nothing is resolved, so a name can never lead off the machine.
func parseTarget(raw string) (Target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Target{}, fmt.Errorf("-url %q: %v", raw, err)
	}
	if u.Scheme != "http" {
		return Target{}, fmt.Errorf("-url %q: only http:// URLs are supported", raw)
	}
	host := u.Hostname()
	var ip netip.Addr
	if strings.EqualFold(host, "localhost") {
		ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	} else if ip, err = netip.ParseAddr(host); err != nil {
		return Target{}, fmt.Errorf("-url %q: refused: the host must be a loopback IP literal (127.0.0.0/8 or ::1) or localhost; names are not resolved", raw)
	}
	ip = ip.Unmap()
	if !ip.IsLoopback() {
		return Target{}, fmt.Errorf("-url %q: refused: %s is not a loopback address (127.0.0.0/8 or ::1); the load generator sends traffic to this machine only", raw, ip)
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return Target{}, fmt.Errorf("-url %q: bad port", raw)
	}
	prefix := strings.TrimRight(u.Path, "/")
	addr := net.JoinHostPort(ip.String(), port)
	return Target{
		Addr: addr,
		Host: u.Host,
		Base: "http://" + addr + prefix,
		Path: prefix + "/events?format=json",
		V4:   ip.Is4(),
	}, nil
}

// parseTargets splits comma-separated values and checks every one before
// anything is dialled.
func parseTargets(vals []string) ([]Target, error) {
	var ts []Target
	for _, v := range vals {
		for _, raw := range strings.Split(v, ",") {
			if raw = strings.TrimSpace(raw); raw == "" {
				continue
			}
			t, err := parseTarget(raw)
			if err != nil {
				return nil, err
			}
			ts = append(ts, t)
		}
	}
	return ts, nil
}

// dialLoopback dials addr (from a Target) with d, re-checking that it is a
// loopback address: a second guard in case a bad address ever gets this far.
func dialLoopback(ctx context.Context, d *net.Dialer, addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Unmap().IsLoopback() {
		return nil, fmt.Errorf("refusing to dial %s: not a loopback address", addr)
	}
	return d.DialContext(ctx, "tcp", addr)
}

// sourceIP is the k-th address of a pool of 127.0.0.0/8 addresses, so no
// source address runs out of ephemeral ports and per-address limits see many
// clients. Pool p covers 127.(first+p*span .. +span-1).x.(1..254).
func sourceIP(first, span byte, k int) net.IP {
	const perOctet = 256 * 254
	k %= int(span) * perOctet
	return net.IPv4(127, first+byte(k/perOctet), byte(k%perOctet/254), byte(1+k%254))
}

// The source pools: measured streams, churned tabs and POSTs each get their
// own addresses.
func streamSource(k int) net.IP { return sourceIP(1, 8, k) } // 127.1–8.x.x: 520k addresses
func churnSource(k int) net.IP  { return sourceIP(9, 2, k) }
func postSource(k int) net.IP   { return sourceIP(11, 1, k) }
func stuckSource(k int) net.IP  { return sourceIP(12, 1, k) }
