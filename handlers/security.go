package handlers

import (
	"crypto/rand"
	"encoding/base64"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/labstack/echo/v4"
)

// contentSecurityPolicy allows only this origin's scripts and styles: the
// pages have no inline script (htmx's own indicator styles are turned off
// in their htmx-config).
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"

// newNonce is a fresh CSP nonce, for a response's one inline <style>.
func newNonce() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// withStyleNonce admits the one <style> marked with nonce into policy.
func withStyleNonce(policy, nonce string) string {
	return strings.Replace(policy, "style-src 'self'", "style-src 'self' 'nonce-"+nonce+"'", 1)
}

// withHTMXEval lets htmx compile hx-on attributes with Function(), for the
// page's few one-line handlers (its connection status and error lines).
// html/template escapes everything a user sends, so none of it can become
// an attribute; inline <script> stays refused.
func withHTMXEval(policy string) string {
	return strings.Replace(policy, "script-src 'self'", "script-src 'self' 'unsafe-eval'", 1)
}

// policy is the CSP of this server: with host sites' identities, their
// users' avatars are https images from anywhere.
func policy(identities bool) string {
	if identities {
		return strings.Replace(contentSecurityPolicy, "img-src 'self'", "img-src 'self' https:", 1)
	}
	return contentSecurityPolicy
}

// securityHeaders sets the headers every response carries.
func securityHeaders(csp string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			h := c.Response().Header()
			h.Set("Content-Security-Policy", csp)
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("Referrer-Policy", "same-origin")
			h.Set("X-Frame-Options", "DENY")
			return next(c)
		}
	}
}

// crossOrigin refuses cross-site browser POSTs (the page's own htmx requests
// and non-browser clients such as curl pass), so no other site can flip the
// light or post in a visitor's name.
func crossOrigin() echo.MiddlewareFunc {
	cop := http.NewCrossOriginProtection()
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if err := cop.Check(c.Request()); err != nil {
				return echo.NewHTTPError(http.StatusForbidden, "cross-origin request refused")
			}
			return next(c)
		}
	}
}

// clientIP names the client for limits. Behind a trusted proxy (Fly's edge)
// that is the address the proxy reports; otherwise the headers are the
// client's own words and only the socket's address counts.
func clientIP(r *http.Request, trustProxy bool) string {
	if trustProxy {
		if ip := net.ParseIP(strings.TrimSpace(r.Header.Get("Fly-Client-IP"))); ip != nil {
			return ip.String()
		}
		first, _, _ := strings.Cut(r.Header.Get("X-Forwarded-For"), ",")
		if ip := net.ParseIP(strings.TrimSpace(first)); ip != nil {
			return ip.String()
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// clientKey is what per-address limits count by: an IPv4 address, or the
// /64 of an IPv6 one, since a single subscriber is routinely given a whole
// /64 and can rotate through it at will.
func clientKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	if a = a.Unmap(); a.Is4() {
		return a.String()
	}
	p, _ := a.WithZone("").Prefix(64) // cannot fail for a 128-bit address
	return p.String()
}

// isHTTPS reports whether the browser reached us over TLS, directly or
// through a trusted proxy that terminated it.
func isHTTPS(c echo.Context, trustProxy bool) bool {
	return c.IsTLS() || (trustProxy && c.Request().Header.Get("X-Forwarded-Proto") == "https")
}
