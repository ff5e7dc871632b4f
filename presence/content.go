package presence

// content is a room's lightbulb records and feeds by owning region: what
// both stores keep, and merge the same way for a snapshot.
type content struct {
	lights map[string]LightRecord
	feeds  map[string][]Message
}

func newContent() content {
	return content{lights: make(map[string]LightRecord), feeds: make(map[string][]Message)}
}

// fill sets the lightbulb and messages of snap, as far as parts asks.
func (c content) fill(snap *Snapshot, parts Part) {
	if parts&PartLight != 0 {
		snap.Light = FoldLight(c.lights)
	}
	if parts&PartMessages != 0 {
		feeds := make([][]Message, 0, len(c.feeds))
		for _, f := range c.feeds {
			feeds = append(feeds, f)
		}
		snap.Recent = MergeFeeds(feeds, feedKeep)
		n := min(FeedLen, len(snap.Recent))
		snap.Messages = snap.Recent[:n:n]
	}
}

// merge adds what o knows to c. Lightbulb records only move forward and
// feeds only grow (keeping the newest keep per region), so merging is
// idempotent and order-free: a stale or partial reading (a store that
// restarted empty, a replica mid-sync) can never take anything away.
func (c content) merge(o content, keep int) {
	for g, rec := range o.lights {
		c.lights[g] = JoinLight(c.lights[g], rec)
	}
	for g, feed := range o.feeds {
		for _, m := range feed {
			c.feeds[g] = AddToFeed(c.feeds[g], m, keep)
		}
	}
}

// clocks calls fn with every timestamp c holds.
func (c content) clocks(fn func(HLC)) {
	for _, rec := range c.lights {
		fn(rec.Last.HLC)
		if rec.Set != nil {
			fn(rec.Set.HLC)
		}
	}
	for _, feed := range c.feeds {
		for _, m := range feed {
			fn(m.HLC)
		}
	}
}

// lacks tells whether o holds anything c does not: a record further on, or
// a message that would be among the newest keep of its region.
func (c content) lacks(o content, keep int) bool {
	for g, rec := range o.lights {
		if JoinLight(c.lights[g], rec) != c.lights[g] {
			return true
		}
	}
	for g, feed := range o.feeds {
		have := make(map[string]bool, len(c.feeds[g]))
		for _, m := range c.feeds[g] {
			have[m.ID] = true
		}
		for _, m := range feed {
			if !have[m.ID] && (len(c.feeds[g]) < keep || newer(m, oldest(c.feeds[g]))) {
				return true
			}
		}
	}
	return false
}

func oldest(feed []Message) Message {
	o := feed[0]
	for _, m := range feed[1:] {
		if newer(o, m) {
			o = m
		}
	}
	return o
}
