package handlers

import (
	"log/slog"
	"time"

	"github.com/labstack/echo/v4"
)

// accessLog logs one line per request, with the request ID that is also
// sent back in X-Request-Id, so a user's report can be found in the logs.
// Streams are logged when they end, with how long they lasted.
func accessLog(log *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			err := next(c)
			code := c.Response().Status
			if he, ok := err.(*echo.HTTPError); ok && !c.Response().Committed {
				code = he.Code
			}
			level := slog.LevelInfo
			if code >= 500 {
				level = slog.LevelError
			}
			log.Log(c.Request().Context(), level, "request",
				"id", c.Response().Header().Get(echo.HeaderXRequestID),
				"method", c.Request().Method,
				"path", c.Request().URL.Path,
				"status", code,
				"ms", time.Since(start).Milliseconds(),
				"client", c.RealIP())
			return err
		}
	}
}
