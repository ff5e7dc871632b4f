package presence

import (
	"time"
)

// redisRoom is what this instance knows of a room: the regions that wrote
// to it, their lightbulb records and feeds, and the presence of every
// instance. Content only grows (see content.merge): whatever the store
// loses, an instance that held it can write it back. While the store is
// down, the room is served as it was.
type redisRoom struct {
	content
	regions  map[string]bool
	insts    map[string]*instTabs
	lastUsed time.Time // asked for by a local stream (see forgetIdle)
}

func newRedisRoom() *redisRoom {
	return &redisRoom{content: newContent(), regions: make(map[string]bool), insts: make(map[string]*instTabs)}
}

type instTabs struct {
	seq  uint64
	tabs map[string]Tab
}

// now is the wall clock.
func (s *Redis) now() time.Time { return s.cfg.Now() }

// observe advances the clock past a timestamp received from the store, so
// that whatever this instance writes next sorts after what it has seen.
func (s *Redis) observe(h HLC) {
	if h == 0 || !s.clock.Observe(h, s.cfg.MaxSkew) {
		return
	}
	if last := s.skewLogged.Load(); time.Since(time.Unix(0, last)) > time.Minute && s.skewLogged.CompareAndSwap(last, time.Now().UnixNano()) {
		s.log.Warn("a remote clock is far ahead of this machine's; following it only as far as the limit",
			"remote", h.Time(), "limit", s.cfg.MaxSkew)
	}
}

// learn merges content read from or written to the store into a tracked
// room and tells watchers which parts it touched. Every timestamp in it
// advances the clock, tracked room or not.
func (s *Redis) learn(room string, c content, parts Part) {
	c.clocks(s.observe)
	s.mu.Lock()
	r := s.rooms[room]
	if r != nil {
		for g := range c.lights {
			r.regions[g] = true
		}
		for g := range c.feeds {
			r.regions[g] = true
		}
		r.merge(c, feedKeep)
	}
	s.mu.Unlock()
	if r != nil {
		s.notify(Change{Room: room, Parts: parts})
	}
}

// learnLights keeps lightbulb records, e.g. the ones a switch answered: the
// instance that took a write shows it at once, whatever its replica's state.
func (s *Redis) learnLights(room string, records map[string]LightRecord) {
	s.learn(room, content{lights: records}, PartLight)
}

// learnMessage keeps a message, e.g. one this instance just stored.
func (s *Redis) learnMessage(room string, m Message) {
	s.learn(room, content{feeds: map[string][]Message{m.Region: {m}}}, PartMessages)
}
