package handlers

import (
	"bytes"
	"encoding/json"
	"html/template"

	"globalpresence/bus"
	"globalpresence/presence"
)

// Format is how a stream carries the parts: the HTML fragments the page
// swaps in, JSON for scripts, or the compact badge of the embeds.
type Format uint8

// The stream formats.
const (
	HTML Format = iota
	JSON
	// Badge carries only what the embeds show: status, presence as a
	// badge, the feed and the viewer's own tabs; no light, no latency.
	Badge
	numFormats
)

// Event names on the stream; each is also the sse-swap name on the page.
const (
	evLight    = "light"
	evRegions  = "regions"
	evMessages = "messages"
	evTabs     = "tabs"
	evLatency  = "latency"
	evStatus   = "status"
)

// renderer turns views into framed SSE events in every format at once, so
// each change is rendered once however many clients receive it. Formats in
// skip are not rendered: a room's streams rarely use all three, and a
// render nobody receives costs as much as one they do.
type renderer struct {
	tmpl *template.Template
	skip formats
}

type framed [numFormats]bus.Event

// part indexes a room's latest renders, in the order a new stream is sent
// them: status first, so a client knows whether what follows is live.
type part int

const (
	partStatus part = iota
	partLight
	partRegions
	partMessages
	partLatency
	numParts
)

var partNames = [numParts]string{evStatus, evLight, evRegions, evMessages, evLatency}

// formats is a set of formats.
type formats uint8

const allFormats formats = 1<<numFormats - 1

func formatSet(f Format) formats     { return 1 << f }
func (fs formats) has(f Format) bool { return fs&formatSet(f) != 0 }

// only is r rendering the formats in want alone.
func (r renderer) only(want formats) renderer {
	r.skip = allFormats &^ want
	return r
}

func (r renderer) wants(f Format) bool { return !r.skip.has(f) }

// frame renders a part in every format not skipped: the page's template
// name, JSON, and the embeds' template "badge-"+name when there is one
// (else the part is not in the badge format, and its frame is nil).
func (r renderer) frame(name string, view, jsonView any) (framed, error) {
	return r.frameBadge(name, view, jsonView, view)
}

// frameBadge is frame with a view of its own for the badge.
func (r renderer) frameBadge(name string, view, jsonView, badgeView any) (framed, error) {
	var f framed
	if r.wants(HTML) {
		h, err := r.html(name, view)
		if err != nil {
			return framed{}, err
		}
		f[HTML] = bus.Event{Key: name, Frame: bus.Frame(name, h)}
	}
	if r.wants(JSON) {
		j, err := json.Marshal(jsonView)
		if err != nil {
			return framed{}, err
		}
		f[JSON] = bus.Event{Key: name, Frame: bus.Frame(name, j)}
	}
	if r.wants(Badge) && r.tmpl.Lookup("badge-"+name) != nil {
		b, err := r.html("badge-"+name, badgeView)
		if err != nil {
			return framed{}, err
		}
		f[Badge] = bus.Event{Key: name, Frame: bus.Frame(name, b)}
	}
	return f, nil
}

func (r renderer) html(tmpl string, view any) ([]byte, error) {
	var buf bytes.Buffer
	if err := r.tmpl.ExecuteTemplate(&buf, tmpl, view); err != nil {
		return nil, err
	}
	return bytes.TrimSpace(buf.Bytes()), nil
}

func (r renderer) light(l presence.Light) (framed, error) {
	v := newLightView(l)
	return r.frame(evLight, v, v)
}

// avatarSample is how many avatars a large room's card still shows.
const avatarSample = 12

// regions renders the region cards: in a room with more than large users in
// a region, the page shows a sample of avatars and the JSON stream counts.
// counts are the users' tabs (presence.TabCounts of rs), which the caller
// keeps anyway: one entry per person, whatever their regions.
func (r renderer) regions(rs []presence.RegionView, counts map[presence.UserID]int, here string, large int) (framed, error) {
	v, total := newRegionViews(rs, here), len(counts)
	return r.frameBadge(evRegions, regionsView{Total: total, Regions: sampleLarge(v, large, avatarSample)},
		regionsView{Total: total, Regions: sampleLarge(v, large, -1)}, newBadgeView(rs, total))
}

// messageRenders holds each message's fragments, HTML (the page's and the
// badge's) and JSON, by ID. A message never changes, so a feed update
// renders only the new one, in the formats wanted.
type messageRenders map[string][numFormats][]byte

// messages renders the feed from the fragments in prev, rendering only what
// is missing there; it returns the fragments of this feed, for next time.
// The result is byte for byte what the "messages" template and json.Marshal
// of the views give.
func (r renderer) messages(ms []presence.Message, prev messageRenders) (framed, messageRenders, error) {
	if len(ms) == 0 {
		f, err := r.frame(evMessages, []messageView{}, struct {
			Messages []messageView `json:"messages"`
		}{[]messageView{}})
		return f, nil, err
	}
	needHTML, needJSON := r.wants(HTML) || r.wants(Badge), r.wants(JSON)
	next := make(messageRenders, len(ms))
	var html, js bytes.Buffer
	js.WriteString(`{"messages":[`)
	for i, m := range ms {
		parts, err := r.message(m, prev[m.ID], needHTML, needJSON)
		if err != nil {
			return framed{}, nil, err
		}
		next[m.ID] = parts
		html.Write(parts[HTML])
		html.WriteByte('\n')
		if i > 0 {
			js.WriteByte(',')
		}
		js.Write(parts[JSON])
	}
	js.WriteString("]}")
	var f framed
	if needHTML {
		feed := bus.Event{Key: evMessages, Frame: bus.Frame(evMessages, bytes.TrimSpace(html.Bytes()))}
		if r.wants(HTML) {
			f[HTML] = feed
		}
		if r.wants(Badge) {
			f[Badge] = feed
		}
	}
	if needJSON {
		f[JSON] = bus.Event{Key: evMessages, Frame: bus.Frame(evMessages, js.Bytes())}
	}
	return f, next, nil
}

// message adds to parts the fragments of m it lacks.
func (r renderer) message(m presence.Message, parts [numFormats][]byte, needHTML, needJSON bool) ([numFormats][]byte, error) {
	needHTML, needJSON = needHTML && parts[HTML] == nil, needJSON && parts[JSON] == nil
	if !needHTML && !needJSON {
		return parts, nil
	}
	v := newMessageView(m)
	if needHTML {
		var h bytes.Buffer
		if err := r.tmpl.ExecuteTemplate(&h, "message", v); err != nil {
			return parts, err
		}
		parts[HTML] = h.Bytes()
	}
	if needJSON {
		j, err := json.Marshal(v)
		if err != nil {
			return parts, err
		}
		parts[JSON] = j
	}
	return parts, nil
}

// tabs renders a user's tab count; the badge's also names the user, so an
// embed can mark their avatar.
func (r renderer) tabs(user presence.UserID, n int) (framed, error) {
	return r.frameBadge(evTabs, n, struct {
		Tabs int `json:"tabs"`
	}{n}, badgeTabs{ID: user.Short(), Tabs: n})
}

func (r renderer) latency(lat []presence.Latency, here string) (framed, error) {
	v := newLatencyViews(lat, here)
	return r.frame(evLatency, latencyLine{Here: place(here), Regions: v}, struct {
		Latency []latencyView `json:"latency"`
	}{v})
}

// status renders whether the room shown is live: the page's notice, and
// {"live":true} or {"live":false,"reason":"…"}.
func (r renderer) status(s presence.Status) (framed, error) {
	v := newStatusView(s)
	return r.frame(evStatus, v, v)
}
