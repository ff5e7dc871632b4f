package presence

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// This file is how an instance hears the store: one dedicated pub/sub
// connection to its regional node, subscribed to its own ping channel, to
// the liveness keys' events, and to the channel of every room it serves
// (and no other). Everything heard is applied by one worker goroutine, in
// order; a lost connection is re-established, and every (re)subscription is
// followed by a full re-read, since anything published meanwhile is lost.

func (s *Redis) enqueue(fn func()) {
	select {
	case s.work <- fn:
	default:
		// Dropping a hint is safe only if a full re-read follows.
		s.overflow.Store(true)
	}
}

// onWorker runs fn on the worker and waits for it.
func (s *Redis) onWorker(ctx context.Context, fn func() error) error {
	done := make(chan error, 1)
	select {
	case s.work <- func() { done <- fn() }:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.ctx.Done():
		return ErrUnavailable
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-s.ctx.Done():
		return ErrUnavailable
	}
}

func (s *Redis) worker() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case fn := <-s.work:
			fn()
		}
		if s.overflow.Swap(false) {
			_ = s.resyncAll()
		}
	}
}

// subscribe keeps a subscription up for the life of the store.
func (s *Redis) subscribe() {
	defer s.wg.Done()
	for s.ctx.Err() == nil {
		err := s.follow()
		s.mu.Lock()
		s.health.subscribed, s.sub = false, nil
		if err != nil {
			s.health.err = err
		}
		s.mu.Unlock()
		select {
		case <-s.ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// follow subscribes one connection and returns when it is lost.
func (s *Redis) follow() error {
	c, release := s.read.Dedicate()
	defer release()
	wait := c.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: s.received})
	ctx, cancel := context.WithTimeout(s.ctx, pollTimeout)
	keyspace := fmt.Sprintf("__keyspace@%d__:%s*", s.db, instPrefix)
	err := errors.Join(
		c.Do(ctx, c.B().Psubscribe().Pattern(keyspace).Build()).Error(),
		c.Do(ctx, c.B().Subscribe().Channel(s.pingChannel(), membersChannel).Build()).Error())
	cancel()
	if err == nil {
		// Rooms are subscribed on the worker, which is also where rooms
		// start being tracked: none can fall between the two.
		err = s.onWorker(s.ctx, func() error { return s.attach(c) })
	}
	if err != nil {
		c.Close()
		return err
	}
	select {
	case err = <-wait:
	case <-s.ctx.Done():
		c.Close()
		err = <-wait
	}
	if err == nil {
		err = errors.New("subscription closed")
	}
	return err
}

// attach subscribes c to every tracked room and makes it the subscription.
// Runs on the worker.
func (s *Redis) attach(c rueidis.DedicatedClient) error {
	s.mu.Lock()
	channels := make([]string, 0, len(s.rooms))
	for room := range s.rooms {
		channels = append(channels, roomChannel(room))
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	for len(channels) > 0 {
		n := min(len(channels), 500)
		if err := c.Do(ctx, c.B().Subscribe().Channel(channels[:n]...).Build()).Error(); err != nil {
			return err
		}
		channels = channels[n:]
	}
	s.subscribes.Add(1)
	s.mu.Lock()
	s.sub = c
	s.health.subscribed = true
	// Anything published while unsubscribed is lost: not ready until
	// everything is re-read (and written back, if the node restarted).
	s.health.doubt("subscribed to store changes", false)
	s.mu.Unlock()
	s.enableNotifications(s.ctx)
	return nil
}

// roomSubscription subscribes to or unsubscribes from a room's channel, if
// subscribed at all (a new subscription takes every tracked room). Runs on
// the worker.
func (s *Redis) roomSubscription(ctx context.Context, room string, on bool) error {
	s.mu.Lock()
	c := s.sub
	s.mu.Unlock()
	if c == nil {
		return nil
	}
	cmd := c.B().Unsubscribe().Channel(roomChannel(room)).Build()
	if on {
		cmd = c.B().Subscribe().Channel(roomChannel(room)).Build()
	}
	return c.Do(ctx, cmd).Error()
}

// received runs on the connection's goroutine: pings are noted here, the
// rest is handed to the worker.
func (s *Redis) received(m rueidis.PubSubMessage) {
	if m.Channel == s.pingChannel() {
		s.mu.Lock()
		s.health.echoAt = time.Now()
		s.mu.Unlock()
		return
	}
	s.enqueue(func() { s.handle(m) })
}

// handle applies one pub/sub message, on the worker goroutine.
func (s *Redis) handle(m rueidis.PubSubMessage) {
	if m.Channel == membersChannel {
		s.applyMember(m.Message)
		return
	}
	if key, ok := strings.CutPrefix(m.Channel, fmt.Sprintf("__keyspace@%d__:", s.db)); ok {
		if inst, ok := strings.CutPrefix(key, instPrefix); ok && (m.Message == "del" || m.Message == "expired") {
			s.instanceGone(inst)
		}
		return
	}
	s.announced.Add(1)
	w, err := decodeWire(m.Channel, m.Message)
	if err != nil {
		s.log.Warn("ignoring a malformed store event", "channel", m.Channel, "message", m.Message, "err", err)
		return
	}
	if !s.tracked(w.Room) {
		// Only after an unsubscribe crossed an announcement in flight;
		// counted, since every such message is work for nothing.
		s.faults.add("foreign_announcement")
		return
	}
	s.lat.observe(w.Region, w.Wall, s.now())
	switch w.Type {
	case "light", "say":
		s.applyContent(w)
	case "join", "leave":
		s.applyDelta(w)
	case "tabs":
		s.reread(w.Room, w.Inst) // an instance rewrote its tabs
	}
}

// enableNotifications turns on the keyspace events this store needs on the
// node it subscribes to, keeping any flags already set. A server that
// refuses CONFIG (managed Redis) must have them in its configuration. It
// also asks the node to ping its replicas every second (KeyDB peers among
// them), so that a peer link that carries nothing is known to be cut; a
// refusal there only leaves that check to the node's own timeout.
func (s *Redis) enableNotifications(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_ = s.read.Do(ctx, s.read.B().ConfigSet().ParameterValue().ParameterValue("repl-ping-replica-period", "1").Build()).Error()
	cur, err := s.read.Do(ctx, s.read.B().ConfigGet().Parameter("notify-keyspace-events").Build()).AsStrMap()
	flags := cur["notify-keyspace-events"]
	missing := missingFlags(flags, keyspaceFlags)
	if err == nil && missing == "" {
		return
	}
	if err == nil {
		err = s.read.Do(ctx, s.read.B().ConfigSet().ParameterValue().ParameterValue("notify-keyspace-events", flags+missing).Build()).Error()
		if err == nil {
			return
		}
	}
	if _, refused := rueidis.IsRedisErr(err); !refused {
		return // not reachable yet: retried after every (re)subscription
	}
	s.log.Error("cannot enable keyspace notifications: add this line to the store's configuration",
		"setting", "notify-keyspace-events "+keyspaceFlags, "err", err)
}

// missingFlags returns the flags of need not implied by have ('A' is every
// event class).
func missingFlags(have, need string) string {
	var out strings.Builder
	for _, f := range need {
		if strings.ContainsRune(have, f) || (f != 'K' && f != 'E' && strings.ContainsRune(have, 'A')) {
			continue
		}
		out.WriteRune(f)
	}
	return out.String()
}
