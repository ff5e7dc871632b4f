package webhook

import (
	"context"
	"hash/fnv"
	"slices"
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

// refresh re-reads the live instances if the last read is older than
// maxAge, and returns those that were live then and are not now; on an
// error it keeps the last set.
func (e *elector) refresh(ctx context.Context, now time.Time, maxAge time.Duration) (gone []string) {
	if e.peers == nil || now.Sub(e.read) < maxAge {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	live, err := e.peers(ctx)
	if err != nil {
		return nil
	}
	for _, inst := range e.live {
		if !slices.Contains(live, inst) {
			gone = append(gone, inst)
		}
	}
	e.live, e.read = live, now
	return gone
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
