package presence

import (
	"context"
	"time"

	"github.com/redis/rueidis"
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

// ClaimHook marks a webhook event as queued, for keep; false: another
// instance claimed it first. Claims go to the write node: the primary
// every region shares, or (KeyDB) the region's own.
func (s *Redis) ClaimHook(ctx context.Context, id string, keep time.Duration) (bool, error) {
	c := s.write
	err := c.Do(ctx, c.B().Set().Key(hookKey(id)).Value("1").Nx().Px(keep).Build()).Error()
	if rueidis.IsRedisNil(err) {
		return false, nil
	}
	return err == nil, err
}
