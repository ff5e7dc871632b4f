// Command global-presence serves a page that shows who else is looking at it
// right now and lets them interact live, over Server-Sent Events.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"globalpresence/bus"
	"globalpresence/handlers"
	"globalpresence/presence"
	"globalpresence/templates"
	"globalpresence/webhook"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "global-presence:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends, then shuts down gracefully.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("global-presence", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", defaultAddr(getenv), "listen address (default :$PORT, or :8080)")
	coalesce := fs.Duration("coalesce", 250*time.Millisecond, "least time between presence updates sent to a client")
	heartbeat := fs.Duration("heartbeat", 15*time.Second, "interval of the keep-alive comment on streams")
	largeRoom := fs.Int("large-room", 50, "above this many users in a region, its card shows a sample of avatars and the JSON stream a count")
	grace := fs.Duration("shutdown-timeout", 5*time.Second, "how long shutdown waits for requests to finish")
	writeTimeout := fs.Duration("write-timeout", 10*time.Second, "drop a stream whose client accepts nothing for this long")
	readTimeout := fs.Duration("read-timeout", 10*time.Second, "a request's headers and body must arrive within this long")
	requestTimeout := fs.Duration("request-timeout", 30*time.Second, "a request other than a stream must be answered within this long of its headers")
	var limits handlers.Limits
	fs.Float64Var(&limits.HiPerSec, "hi-rate", 1, `"say hi" posts per second per user and per address`)
	fs.IntVar(&limits.HiBurst, "hi-burst", 3, `"say hi" posts allowed at once`)
	fs.Float64Var(&limits.LightPerSec, "lightbulb-rate", 5, "lightbulb switches per second per user and per address")
	fs.IntVar(&limits.LightBurst, "lightbulb-burst", 10, "lightbulb switches allowed at once")
	fs.IntVar(&limits.StreamsPerClient, "streams-per-client", 20, "concurrent streams per client address")
	fs.IntVar(&limits.MaxStreams, "max-streams", 19000, "concurrent streams on this instance")
	fs.IntVar(&limits.ConnsPerClient, "conns-per-client", 64, "open connections per client address, streams aside (no cap with -trust-proxy)")
	roomIdle := fs.Duration("room-idle", 30*time.Second, "forget a room (and unsubscribe from it) once no stream here has used it for this long (Redis/KeyDB)")
	retention := fs.Duration("room-retention", 7*24*time.Hour, "delete a room from the store once nobody has used it for this long (Redis/KeyDB)")
	trustProxy := fs.Bool("trust-proxy", getenv("TRUST_PROXY") == "true",
		"believe Fly-Client-IP, X-Forwarded-For and X-Forwarded-Proto (only behind a proxy that sets them; env TRUST_PROXY=true)")
	embedOrigins := fs.String("embed-origins", getenv("EMBED_ORIGINS"),
		"other sites that may embed rooms: comma-separated origins (https://shop.example), or * for any; default none (env EMBED_ORIGINS)")
	webhookURL := fs.String("webhook-url", "", "POST room and member events (occupied, vacated, added, removed) here, signed with env WEBHOOK_SECRET; default none")
	webhookDebounce := fs.Duration("webhook-debounce", 2*time.Second, "a departure undone within this long (a reload) sends no webhook events")
	if err := fs.Parse(args); err != nil {
		return err
	}
	embeds, err := handlers.ParseEmbedOrigins(*embedOrigins)
	if err != nil {
		return err
	}
	identitySecret := getenv("IDENTITY_SECRET")
	if identitySecret != "" && len(identitySecret) < 32 {
		return errors.New("IDENTITY_SECRET must be at least 32 bytes: a short HS256 key can be guessed")
	}
	webhookSecret := getenv("WEBHOOK_SECRET")
	if *webhookURL != "" {
		if u, err := url.Parse(*webhookURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("-webhook-url %q: want an http:// or https:// URL", *webhookURL)
		}
		if len(webhookSecret) < 32 {
			return errors.New("-webhook-url needs WEBHOOK_SECRET, at least 32 bytes: receivers verify the signature with it")
		}
	}
	region := getenv("FLY_REGION")
	if region == "" {
		region = presence.LocalRegion
	}
	log := newLogger(stderr)

	tmpl, err := templates.Parse()
	if err != nil {
		return err
	}
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	store, storeName, err := openStore(getenv, presence.RedisConfig{
		Region: region, RoomIdle: *roomIdle, Retention: *retention, OnLatency: handlers.NewPropagationObserver(metrics), Log: log,
	})
	if err != nil {
		return err
	}
	closeStore := sync.OnceValue(store.Close)
	defer closeStore()
	if *webhookURL != "" {
		defer startWebhooks(store, webhook.Config{
			URL: *webhookURL, Secret: []byte(webhookSecret), Debounce: *webhookDebounce, Metrics: metrics, Log: log,
		}).Close()
	}
	emitter := bus.NewEmitter(0)
	bc := handlers.NewBroadcaster(store, emitter, tmpl, handlers.BroadcasterConfig{
		Region: region, Coalesce: *coalesce, Heartbeat: *heartbeat, LargeRoom: *largeRoom, Log: log,
	})
	defer bc.Close()
	srv := handlers.New(handlers.Config{
		Store: store, Broadcaster: bc, Templates: tmpl, Region: region,
		WriteTimeout: *writeTimeout, Limits: limits, TrustProxy: *trustProxy, EmbedOrigins: embeds,
		IdentitySecret: []byte(identitySecret),
		APIKey:         getenv("PRESENCE_API_KEY"),
		Emitter:        emitter, Metrics: metrics, Log: log,
	})
	defer srv.EndStreams() // stops the stream hub on every return

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	var unused handlers.UnusedConns
	hs := &http.Server{
		Handler: srv,
		ConnState: func(c net.Conn, st http.ConnState) {
			srv.TrackConn(c, st)
			unused.Track(c, st)
		},
		// Streams are hijacked, and leave both deadlines behind.
		ReadTimeout:    *readTimeout,
		WriteTimeout:   *requestTimeout,
		MaxHeaderBytes: 64 << 10, // a browser sends a few KiB
		IdleTimeout:    2 * time.Minute,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	fmt.Fprintf(stdout, "global-presence: listening on http://%s (region %s, store %s)\n", ln.Addr(), region, storeName)
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	srv.EndStreams()
	// This instance's tabs leave everywhere at once, not one by one as
	// each stream ends.
	if err := closeStore(); err != nil {
		log.Warn("closing the store", "err", err)
	}
	unused.Close()
	sctx, cancel := context.WithTimeout(context.Background(), *grace)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// openStore picks the backend: Redis/KeyDB when REDIS_URL is set, else the
// embedded memory store. The name it returns is safe to print (no password).
func openStore(getenv func(string) string, cfg presence.RedisConfig) (presence.Store, string, error) {
	cfg.URL = getenv("REDIS_URL")
	if cfg.URL == "" {
		return presence.NewMemory(cfg.Region), "memory", nil
	}
	cfg.WriteURL = getenv("REDIS_WRITE_URL")
	if cfg.Instance = getenv("FLY_ALLOC_ID"); cfg.Instance == "" {
		cfg.Instance = cfg.Region
	}
	s, err := presence.NewRedis(cfg)
	if err != nil {
		return nil, "", err
	}
	return s, "redis " + s.Instance(), nil
}

// startWebhooks feeds the store's membership transitions to a webhook
// sender; with Redis the instances share the rooms and claim each event.
func startWebhooks(store presence.Store, cfg webhook.Config) *webhook.Sender {
	if r, ok := store.(*presence.Redis); ok {
		cfg.Instance, cfg.Peers = r.Instance(), r.LiveInstances
		cfg.Claim, cfg.Done, cfg.Take = r.ClaimHook, r.HooksDone, r.TakeHooks
	}
	hooks := webhook.New(cfg)
	store.(interface {
		Observe(func(presence.MemberEvent))
	}).Observe(hooks.Observe)
	return hooks
}

func defaultAddr(getenv func(string) string) string {
	if p := getenv("PORT"); p != "" {
		return ":" + p
	}
	return ":8080"
}

// newLogger logs JSON for machines, text for a person at a terminal.
func newLogger(w io.Writer) *slog.Logger {
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			return slog.New(slog.NewTextHandler(w, nil))
		}
	}
	return slog.New(slog.NewJSONHandler(w, nil))
}
