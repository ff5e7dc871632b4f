package webhook

import (
	"slices"
	"sync"
	"time"
)

// undoes names, for an arrival, the departure it cancels within the
// window: a reload is a removal then an add of the same user.
var undoes = map[string]string{"member.added": "member.removed", "room.occupied": "room.vacated"}

// held is an event waiting for its room's earlier events and its own due
// time.
type held struct {
	Event
	due time.Time
}

// debouncer holds departures for a window, in which the matching arrival
// cancels both; arrivals wait behind them, so each room's order holds.
type debouncer struct {
	window time.Duration
	mu     sync.Mutex
	rooms  map[string][]held
}

func newDebouncer(window time.Duration) *debouncer {
	return &debouncer{window: window, rooms: make(map[string][]held)}
}

// add takes an event; it never blocks on anything but the debouncer's lock.
func (d *debouncer) add(e Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	q := d.rooms[e.Room]
	if undo, ok := undoes[e.Type]; ok {
		if i := slices.IndexFunc(q, func(h held) bool { return h.Type == undo && h.User == e.User }); i >= 0 {
			if q = slices.Delete(q, i, i+1); len(q) == 0 {
				delete(d.rooms, e.Room)
			} else {
				d.rooms[e.Room] = q
			}
			return
		}
	}
	due := e.At
	if _, arrival := undoes[e.Type]; !arrival && !e.gone {
		due = due.Add(d.window)
	}
	d.rooms[e.Room] = append(q, held{e, due})
}

// release returns, room by room in order, the events due by now.
func (d *debouncer) release(now time.Time) []Event {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Event
	for room, q := range d.rooms {
		i := 0
		for ; i < len(q) && !q[i].due.After(now); i++ {
			out = append(out, q[i].Event)
		}
		if i == len(q) {
			delete(d.rooms, room)
		} else {
			d.rooms[room] = q[i:]
		}
	}
	return out
}
