package handlers

import (
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"globalpresence/bus"
)

// StoreStats is what a store may report for metrics (the Redis store does).
type StoreStats interface {
	Reconnects() uint64
	Resyncs() uint64
	Announcements() uint64
}

// StoreRooms is what a store may report of the rooms it keeps in this
// process's memory (both stores do).
type StoreRooms interface {
	Rooms() int
}

// StoreEventStats is what a store may report of its faults and recoveries
// (the Redis store does): counts by kind, e.g. store_lost, resync.
type StoreEventStats interface {
	StoreEvents() map[string]uint64
}

// storeEvents exposes StoreEventStats as gp_store_events_total{kind}.
type storeEvents struct {
	src  StoreEventStats
	desc *prometheus.Desc
}

func (c storeEvents) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c storeEvents) Collect(ch chan<- prometheus.Metric) {
	for kind, n := range c.src.StoreEvents() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n), kind)
	}
}

// NewPropagationObserver registers the propagation-delay histogram and
// returns the function a store calls with each delay it measures.
func NewPropagationObserver(reg prometheus.Registerer) func(region string, d time.Duration) {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "gp_propagation_seconds",
		Help:    "Delay from a change in a region to its arrival at this instance, by origin region.",
		Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"region"})
	reg.MustRegister(h)
	return func(region string, d time.Duration) { h.WithLabelValues(region).Observe(d.Seconds()) }
}

// registerMetrics exposes the counters the app already keeps, read when
// scraped, plus HTTP request counts; it returns the request-counting
// middleware.
func (s *Server) registerMetrics(reg prometheus.Registerer, em *bus.Emitter) echo.MiddlewareFunc {
	counter := func(name, help string, read func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(read()) })
	}
	stats := func() bus.Stats { return em.Stats() }
	bc := s.cfg.Broadcaster
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "gp_sse_connections", Help: "Open SSE streams."},
			func() float64 { return float64(s.streams.Open()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "gp_rooms", Help: "Rooms held in memory by the broadcaster: those with streams here."},
			func() float64 { return float64(bc.Rooms()) }),
		counter("gp_events_published_total", "Events published to the emitter (each rendered once).", func() uint64 { return stats().Published }),
		counter("gp_events_delivered_total", "Events queued to subscribers.", func() uint64 { return stats().Delivered }),
		counter("gp_events_coalesced_total", "Queued events replaced by a newer state of the same part.", func() uint64 { return stats().Coalesced }),
		counter("gp_subscribers_evicted_total", "Streams dropped because their queue was full.", func() uint64 { return stats().Evicted }),
		counter("gp_changes_total", "Store changes heard by the broadcaster.", func() uint64 { return bc.Stats().Changes }),
		counter("gp_renders_total", "Snapshots and renders after coalescing changes.", func() uint64 { return bc.Stats().Flushes }),
		counter("gp_parts_published_total", "Rendered parts that changed and were sent.", func() uint64 { return bc.Stats().Published }),
	)
	if st, ok := s.cfg.Store.(StoreStats); ok {
		reg.MustRegister(
			counter("gp_store_reconnects_total", "Store subscriptions re-established.", st.Reconnects),
			counter("gp_store_resyncs_total", "Full re-reads of the store.", st.Resyncs),
			counter("gp_store_announcements_total", "Room announcements received: only those of rooms served here.", st.Announcements),
		)
	}
	if st, ok := s.cfg.Store.(StoreRooms); ok {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "gp_store_rooms",
			Help: "Rooms the store keeps in this process's memory (the embedded store: those with viewers or content)."},
			func() float64 { return float64(st.Rooms()) }))
	}
	if st, ok := s.cfg.Store.(StoreEventStats); ok {
		reg.MustRegister(storeEvents{st, prometheus.NewDesc("gp_store_events_total",
			"Store faults and recoveries by kind: store_connected, store_lost, store_regained, resync, restore.", []string{"kind"}, nil)})
	}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gp_http_requests_total", Help: "HTTP requests by route and status.",
	}, []string{"route", "method", "code"})
	reg.MustRegister(requests)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			answer(c, next(c)) // the status sent, not the 200 before an error's answer
			code := c.Response().Status
			route := c.Path()
			if route == "" {
				route = "unmatched" // don't let arbitrary paths become label values
			}
			requests.WithLabelValues(route, c.Request().Method, strconv.Itoa(code)).Inc()
			return nil
		}
	}
}

func metricsHandler(g prometheus.Gatherer) echo.HandlerFunc {
	return echo.WrapHandler(promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
}
