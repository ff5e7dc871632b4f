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

// who is the identity a request acts as.
type who struct {
	ID presence.UserID
	presence.Profile
	// Known: the request brought it (a cookie or a token); a new visitor's
	// cookie is made in this response.
	Known bool
	// Token is the one the request carried, passed on to the page's stream
	// and forms so they act as the same user.
	Token string
}

// identify returns the user behind a request. A host site's signed token
// names its user (see token.go); else the browser's cookie does. A browser
// without a valid secret gets a new one in this same response, and its ID
// is derived from that new secret at once, so the first visit already has
// its real ID.
func (s *Server) identify(c echo.Context, token string) (who, error) {
	if token != "" {
		if len(s.cfg.IdentitySecret) == 0 {
			return who{}, echo.NewHTTPError(http.StatusUnauthorized, "this server takes no tokens (IDENTITY_SECRET is not set)")
		}
		cl, err := parseToken(s.cfg.IdentitySecret, token, time.Now())
		if err != nil {
			return who{}, echo.NewHTTPError(http.StatusUnauthorized, err.Error())
		}
		return who{ID: presence.IDFromSubject(cl.Sub), Profile: presence.Profile{Name: cl.Name, Avatar: cl.Avatar},
			Known: true, Token: token}, nil
	}
	if ck, err := c.Cookie(cookieName); err == nil && presence.ValidSecret(ck.Value) {
		return who{ID: presence.IDFromSecret(ck.Value), Known: true}, nil
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
	return who{ID: presence.IDFromSecret(secret)}, nil
}

// edgeRegion is the Fly edge the request came through; off Fly the header is
// client-controlled, so only known region codes are believed.
func edgeRegion(c echo.Context, fallback string) string {
	if r := c.Request().Header.Get("Fly-Region"); presence.KnownRegion(r) {
		return r
	}
	return fallback
}
