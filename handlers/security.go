package handlers

import (
	"net"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// contentSecurityPolicy allows only this origin's scripts and styles: the
// page has no inline script (htmx's own indicator styles are turned off in
// the page's htmx-config). 'unsafe-eval' is there for htmx alone, which
// compiles the page's few hx-on attributes (the connection status, error
// messages) with Function(); html/template escapes everything else, so no
// attribute comes from a user.
const contentSecurityPolicy = "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"

// withStyleNonce is the policy for a page that has one <style> of its own.
func withStyleNonce(nonce string) string {
	return strings.Replace(contentSecurityPolicy, "style-src 'self'", "style-src 'self' 'nonce-"+nonce+"'", 1)
}

// securityHeaders sets the headers every response carries.
func securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		return next(c)
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

// isHTTPS reports whether the browser reached us over TLS, directly or
// through a trusted proxy that terminated it.
func isHTTPS(c echo.Context, trustProxy bool) bool {
	return c.IsTLS() || (trustProxy && c.Request().Header.Get("X-Forwarded-Proto") == "https")
}
