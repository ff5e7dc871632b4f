package handlers

import (
	"log/slog"
	"time"

	"github.com/labstack/echo/v4"
)

// accessLog logs one line per request, with the request ID that is also
// sent back in X-Request-Id, so a user's report can be found in the logs.
// Streams are logged when they end, with how long they lasted.
//
// An error is answered here, by the error handler, so the line carries the
// status sent (a 503 for the store down), not the 200 the response held
// before the answer was written.
func accessLog(log *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			answer(c, next(c))
			code := c.Response().Status
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
			return nil
		}
	}
}

// answer has the error handler answer err now, unless it is nil: then the
// response holds the status sent, for the middlewares that log and count it.
// The error handler does nothing to a response already committed, so an
// error answered this way is answered once (what Echo would do with it
// after the middlewares returned).
func answer(c echo.Context, err error) {
	if err != nil {
		c.Error(err)
	}
}
