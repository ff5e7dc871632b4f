package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// With -rooms, streams are spread over rooms named lg/r0, lg/r1, …: room 0
// holds -big-room viewers, every other room at least one and at most
// -room-max, the rest placed at random. Each post goes to the room of a
// random stream (rooms get posts in proportion to their viewers), and so
// does each churned tab. A post's text names its room, so every stream
// can tell a post of its own room from one that leaked from another.

// roomName is the name of the load generator's k-th room.
func roomName(k int) string { return "lg/r" + strconv.Itoa(k) }

// roomPath is where a room's resource lives on a target: its events
// stream, or a POST action like /hi.
func roomPath(t *Target, room int, rest string) string {
	prefix := strings.TrimSuffix(t.Path, "/events?format=json")
	return prefix + "/rooms/" + roomName(room) + rest
}

// planRooms gives each stream a room, shuffled so the ramp, the workers and
// the source addresses mix rooms; nil without -rooms (every stream in the
// default room). rng nil only checks the flags.
func planRooms(o options, rng *mrand.Rand) ([]int32, error) {
	if o.rooms == 0 {
		if o.bigRoom != 0 {
			return nil, errors.New("-big-room needs -rooms")
		}
		return nil, nil
	}
	others := o.rooms
	if o.bigRoom > 0 {
		others--
	}
	spare := o.conns - o.bigRoom - others
	switch {
	case o.rooms < 0 || o.rooms > 100000:
		return nil, errors.New("-rooms must be 0..100000")
	case o.bigRoom < 0 || o.roomMax < 1:
		return nil, errors.New("-big-room must be 0 or more and -room-max at least 1")
	case spare < 0 || spare > others*(o.roomMax-1):
		return nil, fmt.Errorf("-conns %d cannot fill %d rooms of 1..%d viewers beside a large room of %d", o.conns, others, o.roomMax, o.bigRoom)
	}
	if rng == nil {
		return nil, nil
	}
	first := o.rooms - others // room 0 is the large one, if any
	sizes := make([]int, o.rooms)
	sizes[0] = o.bigRoom
	open := make([]int, 0, others) // rooms with space left
	for r := first; r < o.rooms; r++ {
		sizes[r] = 1
		if o.roomMax > 1 {
			open = append(open, r)
		}
	}
	for ; spare > 0; spare-- {
		i := rng.IntN(len(open))
		r := open[i]
		if sizes[r]++; sizes[r] == o.roomMax {
			open[i] = open[len(open)-1]
			open = open[:len(open)-1]
		}
	}
	plan := make([]int32, 0, o.conns)
	for r, n := range sizes {
		for range n {
			plan = append(plan, int32(r))
		}
	}
	rng.Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })
	return plan, nil
}

// settled is what is left on the app once every stream has closed.
type settled struct {
	rss, rooms int64 // -1: not measured
	took       time.Duration
}

// awaitSettled polls the app until it holds no room (gp_rooms, summed over
// the targets) and, with a pid, its RSS is within 10% of idle, or until
// limit: what rooms cost once they are empty.
func awaitSettled(ctx context.Context, targets []Target, pid int, idle int64, limit time.Duration) settled {
	start := time.Now()
	client := postClient()
	defer client.CloseIdleConnections()
	for {
		st := settled{rss: -1, rooms: -1, took: time.Since(start)}
		if pid > 0 {
			if rss, err := readRSS(pid); err == nil {
				st.rss = rss
			}
		}
		for _, t := range targets {
			n, err := gauge(ctx, client, "http://"+t.Addr+"/metrics", "gp_rooms")
			if err != nil {
				st.rooms = -1
				break
			}
			st.rooms = max(st.rooms, 0) + n
		}
		done := st.rooms <= 0 && (pid <= 0 || st.rss >= 0 && float64(st.rss) <= 1.1*float64(idle))
		if done || st.took >= limit || !sleepCtx(ctx, 500*time.Millisecond) {
			return st
		}
	}
}

// gauge reads one unlabelled metric from a Prometheus text page.
func gauge(ctx context.Context, c *http.Client, u, name string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int64(f), err
		}
	}
	return 0, fmt.Errorf("%s: no %s", u, name)
}
