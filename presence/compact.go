package presence

import (
	"maps"
	"strings"
)

// Copies that own their memory. What outlives a burst of traffic (messages
// posted during it, say) was allocated among that burst's garbage: once it
// is collected, each survivor pins a page of its own, which the runtime
// cannot return. Copied all at once, the survivors share a few pages, and
// the scattered ones are freed whole.

func (c content) compacted() content {
	out := content{lights: make(map[string]LightRecord, len(c.lights)), feeds: make(map[string][]Message, len(c.feeds))}
	for g, rec := range c.lights {
		out.lights[strings.Clone(g)] = rec.compacted()
	}
	for g, feed := range c.feeds {
		msgs := make([]Message, len(feed))
		for i, m := range feed {
			msgs[i] = m.compacted()
		}
		out.feeds[strings.Clone(g)] = msgs
	}
	return out
}

func (rec LightRecord) compacted() LightRecord {
	rec.Last.By, rec.Last.From = UserID(strings.Clone(string(rec.Last.By))), strings.Clone(rec.Last.From)
	if rec.Set != nil {
		set := *rec.Set
		set.Base = maps.Clone(set.Base)
		rec.Set = &set
	}
	return rec
}

// A message's and a tab's Region is the storing instance's own, one
// string shared by all: copying it would only make one per copy.

func (m Message) compacted() Message {
	m.ID, m.User, m.Colour = strings.Clone(m.ID), UserID(strings.Clone(string(m.User))), strings.Clone(m.Colour)
	m.From, m.Text = strings.Clone(m.From), strings.Clone(m.Text)
	m.Profile = m.Profile.compacted()
	return m
}

func (t Tab) compacted() Tab {
	t.ID, t.User, t.Colour = strings.Clone(t.ID), UserID(strings.Clone(string(t.User))), strings.Clone(t.Colour)
	t.Profile = t.Profile.compacted()
	return t
}

func (p Profile) compacted() Profile {
	return Profile{Name: strings.Clone(p.Name), Avatar: strings.Clone(p.Avatar)}
}
