package presence

import (
	"context"
	"strconv"
	"time"
)

// This file is what the webhook sender needs of the store to send each
// transition once across instances and regions: who is alive to share the
// rooms among, and a claim on each event.

// LiveInstances lists the instances whose liveness key is set: every
// instance reads the same set within a beat.
func (s *Redis) LiveInstances(ctx context.Context) ([]string, error) {
	c := s.read
	insts, err := c.Do(ctx, c.B().Hkeys().Key(instancesKey).Build()).AsStrSlice()
	if err != nil || len(insts) == 0 {
		return nil, err
	}
	keys := make([]string, len(insts))
	for i, inst := range insts {
		keys[i] = instKey(inst)
	}
	alive, err := c.Do(ctx, c.B().Mget().Key(keys...).Build()).ToArray()
	if err != nil {
		return nil, err
	}
	live := []string{}
	for i, v := range alive {
		if !v.IsNil() {
			live = append(live, insts[i])
		}
	}
	return live, nil
}

// ClaimHook claims a webhook event for keep and keeps it in this
// instance's outbox until HooksDone; false: another instance claimed it
// first. Claims go to the write node: the primary every region shares, or
// (KeyDB) the region's own.
func (s *Redis) ClaimHook(ctx context.Context, id string, event []byte, keep time.Duration) (bool, error) {
	n, err := s.exec(ctx, claimHookScript, []string{hookKey(id), outboxKey(s.inst)},
		[]string{id, string(event), strconv.FormatInt(keep.Milliseconds(), 10), s.inst}).AsInt64()
	return n == 1, err
}

// HooksDone removes delivered (or given up) events from this instance's
// outbox.
func (s *Redis) HooksDone(ctx context.Context, ids []string) error {
	c := s.write
	return c.Do(ctx, c.B().Hdel().Key(outboxKey(s.inst)).Field(ids...).Build()).Error()
}

// TakeHooks moves a dead instance's undelivered events to this instance's
// outbox and returns them (none while it is alive, or if another instance
// took them first).
func (s *Redis) TakeHooks(ctx context.Context, dead string) ([][]byte, error) {
	flat, err := s.exec(ctx, takeHooksScript, []string{instKey(dead), outboxKey(dead), outboxKey(s.inst)}, nil).AsStrSlice()
	if err != nil {
		return nil, err
	}
	events := make([][]byte, 0, len(flat)/2)
	for i := 1; i < len(flat); i += 2 {
		events = append(events, []byte(flat[i]))
	}
	return events, nil
}
