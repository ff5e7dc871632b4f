package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"globalpresence/presence"
)

// Config is what a Sender needs; zero durations and sizes take the
// defaults in brackets.
type Config struct {
	URL    string
	Secret []byte
	// Debounce is how long a departure waits for the arrival that cancels
	// it [2 s].
	Debounce time.Duration
	// Instance and Peers, the live instances, share the rooms: each
	// instance sends its rooms' events. Peers nil: one instance.
	Instance string
	Peers    func(context.Context) ([]string, error)
	// Claim takes an event in the store for keep, so that no other
	// instance sends it too (false: one did), and keeps it in this
	// instance's outbox until Done, so that Take by another instance finds
	// it if this one dies first. nil: no guard and no outbox (one
	// instance).
	Claim   func(ctx context.Context, id string, event []byte, keep time.Duration) (bool, error)
	Done    func(ctx context.Context, ids []string) error
	Take    func(ctx context.Context, dead string) ([][]byte, error)
	Metrics prometheus.Registerer
	Log     *slog.Logger

	every      time.Duration // least time between requests [1 s]
	keep       time.Duration // how long an undelivered event is retried [10 min]
	maxBackoff time.Duration // [30 s]
	maxQueue   int           // [10,000]
	timeout    time.Duration // per request [10 s]
}

const maxBatch = 500 // events per request

// Sender delivers one instance's share of the events: Observe only
// queues, a goroutine of its own debounces, deduplicates and posts.
type Sender struct {
	cfg      Config
	debounce *debouncer
	elect    elector
	queue    queue
	client   *http.Client
	wake     chan struct{}
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	events   *prometheus.CounterVec // by result: delivered, dropped, expired
	requests *prometheus.CounterVec // by result: ok, error
}

// New starts a Sender; Close stops it.
func New(cfg Config) *Sender {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.Debounce, 2*time.Second)
	def(&cfg.every, time.Second)
	def(&cfg.keep, 10*time.Minute)
	def(&cfg.maxBackoff, 30*time.Second)
	def(&cfg.timeout, 10*time.Second)
	if cfg.maxQueue <= 0 {
		cfg.maxQueue = 10_000
	}
	s := &Sender{
		cfg:      cfg,
		debounce: newDebouncer(cfg.Debounce),
		elect:    elector{self: cfg.Instance, peers: cfg.Peers},
		queue:    queue{cap: cfg.maxQueue},
		client:   &http.Client{Timeout: cfg.timeout},
		wake:     make(chan struct{}, 1),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gp_webhook_events_total",
			Help: "Webhook events by outcome: delivered, dropped (queue full), expired (undelivered for too long)."}, []string{"result"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gp_webhook_requests_total",
			Help: "Webhook requests by outcome: ok (2xx) or error."}, []string{"result"}),
	}
	if cfg.Metrics != nil {
		cfg.Metrics.MustRegister(s.events, s.requests, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gp_webhook_queue_events", Help: "Webhook events waiting for delivery."},
			func() float64 { return float64(s.queue.len()) }))
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(2)
	go s.pump(ctx)
	go s.deliver(ctx)
	return s
}

// Observe takes a transition; it is meant for presence.Members.Observe and
// never blocks on the endpoint or the store.
func (s *Sender) Observe(e presence.MemberEvent) {
	if e.Initial {
		return // what was there when this instance started: no change
	}
	s.debounce.add(newEvent(e, time.Now(), s.cfg.Debounce))
}

// Close stops delivery; what is still queued is lost.
func (s *Sender) Close() {
	s.cancel()
	s.wg.Wait()
}

// pump moves the events that outlived the debounce window to the queue,
// those of this instance's rooms only, each once across instances.
func (s *Sender) pump(ctx context.Context) {
	defer s.wg.Done()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			due := s.debounce.release(now)
			// A second-old set of live instances is fresh enough to notice
			// the dead (and take over their events); who sends a room's
			// events needs today's, or instances that read the set at
			// different times may each leave a room to another.
			maxAge := time.Second
			if len(due) > 0 {
				maxAge = 100 * time.Millisecond
			}
			var mine []Event
			for _, dead := range s.elect.refresh(ctx, now, maxAge) {
				mine = append(mine, s.take(ctx, dead)...)
			}
			for _, e := range due {
				if s.elect.sends(e.Room) && s.claim(ctx, e) {
					mine = append(mine, e)
				}
			}
			if len(mine) == 0 {
				continue
			}
			if dropped := s.queue.push(mine, now); len(dropped) > 0 {
				s.events.WithLabelValues("dropped").Add(float64(len(dropped)))
				s.cfg.Log.Warn("webhook queue full: dropped the oldest events", "events", len(dropped))
				s.done(ctx, dropped)
			}
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}
	}
}

// claim tells whether to send an event: if the store cannot say, send it
// (at least once).
func (s *Sender) claim(ctx context.Context, e Event) bool {
	if s.cfg.Claim == nil {
		return true
	}
	b, err := json.Marshal(e)
	if err != nil {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	ok, err := s.cfg.Claim(ctx, e.ID, b, s.cfg.keep)
	return ok || err != nil
}

// take adopts the undelivered events of an instance that died, oldest
// first. An instance taken for dead while it was only stalled may send
// them too: receivers drop the copies by ID.
func (s *Sender) take(ctx context.Context, dead string) []Event {
	if s.cfg.Take == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	raw, err := s.cfg.Take(ctx, dead)
	if err != nil {
		s.cfg.Log.Warn("taking over a gone instance's webhook events", "instance", dead, "err", err)
		return nil
	}
	evs := make([]Event, 0, len(raw))
	for _, b := range raw {
		var e Event
		if json.Unmarshal(b, &e) == nil {
			evs = append(evs, e)
		}
	}
	slices.SortStableFunc(evs, func(a, b Event) int { return a.At.Compare(b.At) })
	if len(evs) > 0 {
		s.cfg.Log.Info("took over a gone instance's webhook events", "instance", dead, "events", len(evs))
	}
	return evs
}

// done removes events from this instance's outbox in the store: delivered,
// or given up. If that fails they stay, to be sent again by whoever takes
// this instance's outbox: at least once.
func (s *Sender) done(ctx context.Context, evs []queued) {
	if s.cfg.Done == nil || len(evs) == 0 {
		return
	}
	ids := make([]string, len(evs))
	for i, e := range evs {
		ids[i] = e.ID
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.cfg.Done(ctx, ids); err != nil {
		s.cfg.Log.Warn("clearing delivered webhook events from the store", "events", len(ids), "err", err)
	}
}

// deliver posts the queue's head, a batch at most every cfg.every, and
// retries a failed batch with exponential backoff; events undelivered for
// cfg.keep are dropped.
func (s *Sender) deliver(ctx context.Context) {
	defer s.wg.Done()
	var next time.Time // no request before
	var backoff time.Duration
	for {
		if s.queue.len() == 0 {
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
		}
		now := time.Now()
		evs, expired := s.queue.head(maxBatch, now.Add(-s.cfg.keep))
		if len(expired) > 0 {
			s.events.WithLabelValues("expired").Add(float64(len(expired)))
			s.cfg.Log.Warn("webhook events undelivered for too long: dropped", "events", len(expired))
			s.done(ctx, expired)
		}
		if len(evs) == 0 {
			continue
		}
		next = now.Add(s.cfg.every)
		if err := s.post(ctx, evs); err != nil {
			backoff = min(max(2*backoff, time.Second), s.cfg.maxBackoff)
			next = now.Add(max(backoff, s.cfg.every))
			s.requests.WithLabelValues("error").Inc()
			s.cfg.Log.Warn("webhook delivery failed; retrying", "events", len(evs), "in", backoff, "err", err)
			continue
		}
		backoff = 0
		s.queue.done(evs[len(evs)-1].n)
		s.done(ctx, evs)
		s.requests.WithLabelValues("ok").Inc()
		s.events.WithLabelValues("delivered").Add(float64(len(evs)))
	}
}

// post sends one signed batch.
func (s *Sender) post(ctx context.Context, evs []queued) error {
	b := batch{Timestamp: time.Now().Unix(), Events: make([]Event, len(evs))}
	for i, e := range evs {
		b.Events[i] = e.Event
	}
	body, err := json.Marshal(b)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Presence-Timestamp", strconv.FormatInt(b.Timestamp, 10))
	req.Header.Set("X-Presence-Signature", "sha256="+sign(s.cfg.Secret, body))
	res, err := s.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10)) // so the connection is reused
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("endpoint answered %s", res.Status)
	}
	return nil
}

// sign is the hex HMAC-SHA256 of body with secret, as in
// X-Presence-Signature.
func sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}
