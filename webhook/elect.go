package webhook

import (
	"context"
	"hash/fnv"
	"time"
)

// elector shares the rooms among the live instances by rendezvous hashing:
// a room's sender is the instance with the highest hash of (instance,
// room), so when one goes only its rooms move, each to its runner-up, and
// instances that read the same set agree without talking. Used by the
// pump goroutine only.
type elector struct {
	self  string
	peers func(context.Context) ([]string, error)
	live  []string
	read  time.Time
}

// refresh re-reads the live instances, at most once a second; on an error
// it keeps the last set.
func (e *elector) refresh(ctx context.Context, now time.Time) {
	if e.peers == nil || now.Sub(e.read) < time.Second {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if live, err := e.peers(ctx); err == nil {
		e.live, e.read = live, now
	}
}

// sends tells whether this instance sends the room's events. Not knowing
// the set (one instance, or no answer yet), it does: at least once.
func (e *elector) sends(room string) bool {
	var best string
	var top uint64
	for _, inst := range e.live {
		h := fnv.New64a()
		h.Write([]byte(inst + "\x00" + room))
		if v := h.Sum64(); best == "" || v > top || v == top && inst > best {
			best, top = inst, v
		}
	}
	return best == "" || best == e.self
}
