package handlers

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"globalpresence/presence"
)

const (
	cookieName = "gp_secret"
	cookieAge  = 400 * 24 * time.Hour // the longest browsers keep a cookie
)

// identify returns the user behind a request, and whether the request
// brought that identity (false for a new one). A browser without a valid
// secret gets a new one in this same response, and its ID is derived from
// that new secret at once, so the first visit already has its real ID.
func (s *Server) identify(c echo.Context) (presence.UserID, bool) {
	if ck, err := c.Cookie(cookieName); err == nil && presence.ValidSecret(ck.Value) {
		return presence.IDFromSecret(ck.Value), true
	}
	secret := presence.NewSecret()
	ck := &http.Cookie{
		Name:     cookieName,
		Value:    secret,
		Path:     "/",
		MaxAge:   int(cookieAge.Seconds()),
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
		Secure:   isHTTPS(c, s.cfg.TrustProxy),
	}
	if ck.Secure && s.cfg.EmbedOrigins.Configured() {
		// Embedded in another site, the cookie is a third-party one: sent
		// only if SameSite=None, and kept by browsers that block those only
		// if partitioned (one identity per embedding site).
		ck.SameSite, ck.Partitioned = http.SameSiteNoneMode, true
	}
	c.SetCookie(ck)
	return presence.IDFromSecret(secret), false
}

// edgeRegion is the Fly edge the request came through; off Fly the header is
// client-controlled, so only known region codes are believed.
func edgeRegion(c echo.Context, fallback string) string {
	if r := c.Request().Header.Get("Fly-Region"); presence.KnownRegion(r) {
		return r
	}
	return fallback
}
