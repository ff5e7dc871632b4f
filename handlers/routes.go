// Package handlers is the HTTP face of the app: the page, the curl API and
// the SSE streams, on Echo.
package handlers

import (
	"bytes"
	"context"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"globalpresence/bus"
	"globalpresence/bus/hub"
	"globalpresence/presence"
	"globalpresence/static"
)

// DefaultRoom is the room of the page at /. Everything is keyed by room so
// other pages can get their own presence later.
const DefaultRoom = "home"

// Config is what the handlers need.
type Config struct {
	Store       presence.Store
	Broadcaster *Broadcaster
	Templates   *template.Template
	Region      string        // this app region
	Retry       time.Duration // reconnection delay advised to SSE clients
	// WriteTimeout drops a stream whose client accepts nothing for this
	// long (10 s).
	WriteTimeout time.Duration
	Limits       Limits
	// TrustProxy believes Fly-Client-IP, X-Forwarded-For and
	// X-Forwarded-Proto: set it only behind a proxy that sets them (Fly).
	TrustProxy bool
	// EmbedOrigins are the other sites that may embed rooms.
	EmbedOrigins EmbedOrigins
	// IdentitySecret verifies host sites' tokens naming their users
	// (IDENTITY_SECRET); empty: tokens are refused.
	IdentitySecret []byte
	// APIKey guards the integration API (PRESENCE_API_KEY); empty: it
	// answers only on loopback.
	APIKey string
	// Emitter is the bus the Broadcaster publishes to (for metrics).
	Emitter *bus.Emitter
	// Metrics is where /metrics is gathered from; nil makes a new registry.
	Metrics *prometheus.Registry
	Log     *slog.Logger
}

// Server holds the routes and can end every open stream.
type Server struct {
	cfg        Config
	echo       *echo.Echo
	hiLimit    *limiter
	lightLimit *limiter
	streams    *streamCounter
	conns      *connCap
	// hub holds the hijacked streams; its Shutdown ends them all, as they
	// never end by themselves.
	hub    *hub.Hub
	settle *settler
	csp    string // Content-Security-Policy
}

// New builds the routes.
func New(cfg Config) *Server {
	if cfg.Retry <= 0 {
		cfg.Retry = 2 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	cfg.Limits.defaults()
	s := &Server{
		cfg:        cfg,
		echo:       echo.New(),
		hiLimit:    newLimiter(cfg.Limits.HiPerSec, cfg.Limits.HiBurst),
		lightLimit: newLimiter(cfg.Limits.LightPerSec, cfg.Limits.LightBurst),
		streams:    newStreamCounter(cfg.Limits.StreamsPerClient, cfg.Limits.MaxStreams),
		conns:      newConnCap(cfg.Limits.ConnsPerClient),
		hub:        hub.New(hub.Config{WriteTimeout: cfg.WriteTimeout}),
		csp:        policy(len(cfg.IdentitySecret) > 0),
	}
	s.settle = newSettler(settleQuiet, settleLeast, func(opens, closes int) {
		start := time.Now()
		if c, ok := cfg.Store.(interface{ Compact() }); ok {
			// Collected first, the burst's garbage leaves whole pages free
			// and the copies fill the holes among what survived, rather
			// than being scattered over pages that garbage still holds.
			runtime.GC()
			c.Compact()
		}
		debug.FreeOSMemory()
		cfg.Log.Info("returned memory to the OS after a burst of stream opens or closes",
			"opens", opens, "closes", closes, "ms", time.Since(start).Milliseconds())
	})
	e := s.echo
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.errorHandler
	e.IPExtractor = func(r *http.Request) string { return clientIP(r, cfg.TrustProxy) }
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	e.Use(middleware.Recover(), middleware.RequestID(), accessLog(cfg.Log),
		s.registerMetrics(cfg.Metrics, cfg.Emitter), securityHeaders(s.csp), crossOrigin())

	// Every GET answers HEAD too, with the same headers and no body (what
	// monitors send); a stream's HEAD opens no stream.
	get := func(path string, h echo.HandlerFunc) { e.Match([]string{http.MethodGet, http.MethodHead}, path, h) }
	get("/", s.page)
	e.POST("/lightbulb", s.lightbulb)
	e.POST("/hi", s.hi)
	get("/api/state", s.state)
	get("/events", s.events)
	get("/rooms/*", s.roomGet)
	e.POST("/rooms/*", s.roomPost)
	get("/api/rooms", s.integration(s.roomsList))
	get("/api/users/:user/rooms", s.integration(s.userRooms))
	get("/api/rooms/*", s.roomState)
	get("/embed/*", s.embed)
	js, err := embedScript()
	if err != nil {
		panic(err) // the embedded files are broken: a build defect
	}
	get("/embed.js", serveEmbedScript(js))
	get("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	get("/readyz", s.ready)
	get("/metrics", metricsHandler(cfg.Metrics))
	get("/static/*", echo.WrapHandler(http.StripPrefix("/static/", http.FileServerFS(filesOnly{static.FS}))))
	return s
}

// filesOnly serves the files of an FS and no directory listings: a
// directory is not found.
type filesOnly struct{ fs.FS }

func (f filesOnly) Open(name string) (fs.File, error) {
	file, err := f.FS.Open(name)
	if err != nil {
		return nil, err
	}
	if st, err := file.Stat(); err != nil || st.IsDir() {
		file.Close()
		return nil, fs.ErrNotExist
	}
	return file, nil
}

// ServeHTTP makes the Server an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.echo.ServeHTTP(w, r) }

// limit spends one of the client's tokens for an action, or answers 429.
// It counts by address, and by user when the request brought its identity:
// a new one would get a bucket of its own, full, for every request.
func (s *Server) limit(c echo.Context, l *limiter, user presence.UserID, known bool, what string) error {
	keys := []string{"a:" + clientKey(c.RealIP())}
	if known {
		keys = append(keys, "u:"+string(user))
	}
	if wait := l.allow(time.Now(), keys...); wait > 0 {
		return tooMany(c, wait, what)
	}
	return nil
}

// EndStreams ends every open SSE stream (clients reconnect elsewhere) and
// makes new ones end at once. Calling it again does nothing.
func (s *Server) EndStreams() {
	s.settle.stop()
	s.hub.Shutdown()
}

// errorHandler answers every error as a short JSON message with its status;
// anything unexpected is logged and answered 500 without internals.
func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	he, ok := err.(*echo.HTTPError)
	if errors.Is(err, presence.ErrUnavailable) {
		he, ok = echo.NewHTTPError(http.StatusServiceUnavailable, "the store is unavailable; try again shortly"), true
	}
	if !ok {
		s.cfg.Log.Error("request failed", "method", c.Request().Method, "path", c.Request().URL.Path, "err", err)
		he = echo.NewHTTPError(http.StatusInternalServerError, "internal error")
	}
	msg, ok := he.Message.(string)
	if !ok {
		msg = http.StatusText(he.Code)
	}
	if c.Request().ContentLength != 0 {
		// The body may be unread: closing spares the server from draining
		// it (a client that never sends the rest would hold the answer).
		c.Response().Header().Set("Connection", "close")
	}
	switch {
	case c.Request().Method == http.MethodHead:
		err = c.NoContent(he.Code)
	case isHTMX(c):
		// Into the live region beside the control that sent it; the form,
		// and what was typed in it, stay as they are.
		c.Response().Header().Set("HX-Retarget", "find .error")
		c.Response().Header().Set("HX-Reswap", "innerHTML")
		err = c.HTML(he.Code, template.HTMLEscapeString(msg))
	case wantsPage(c):
		err = s.errorPage(c, he.Code, msg)
	default:
		err = c.JSON(he.Code, map[string]string{"error": msg})
	}
	if err != nil {
		s.cfg.Log.Warn("writing error response", "err", err)
	}
}

// errorPage tells a browser without JavaScript what went wrong, with the
// way back to the page.
func (s *Server) errorPage(c echo.Context, code int, msg string) error {
	var buf bytes.Buffer
	if err := s.cfg.Templates.ExecuteTemplate(&buf, "error-page", struct{ Message, Back string }{msg, pageURL(roomOf(c))}); err != nil {
		return err
	}
	return c.HTMLBlob(code, buf.Bytes())
}

// ready answers 200 when the store is connected and following changes
// (always, for the embedded store), 503 with the reason otherwise.
func (s *Server) ready(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	if err := s.cfg.Store.Ready(ctx); err != nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "not ready: "+err.Error())
	}
	return c.String(http.StatusOK, "ready\n")
}
