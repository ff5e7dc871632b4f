package handlers

import (
	"bytes"
	"encoding/json"
	"html/template"

	"globalpresence/bus"
	"globalpresence/presence"
)

// Format is how a stream carries the parts: the HTML fragments the page
// swaps in, or JSON for scripts.
type Format uint8

// The stream formats.
const (
	HTML Format = iota
	JSON
	numFormats
)

// Event names on the stream; each is also the sse-swap name on the page.
const (
	evLight    = "light"
	evRegions  = "regions"
	evMessages = "messages"
	evTabs     = "tabs"
	evLatency  = "latency"
)

// renderer turns views into framed SSE events in both formats at once, so
// each change is rendered once however many clients receive it.
type renderer struct {
	tmpl *template.Template
}

type framed [numFormats]bus.Event

func (r renderer) frame(name string, view, jsonView any) (framed, error) {
	var buf bytes.Buffer
	if err := r.tmpl.ExecuteTemplate(&buf, name, view); err != nil {
		return framed{}, err
	}
	j, err := json.Marshal(jsonView)
	if err != nil {
		return framed{}, err
	}
	return framed{
		HTML: {Key: name, Frame: bus.Frame(name, bytes.TrimSpace(buf.Bytes()))},
		JSON: {Key: name, Frame: bus.Frame(name, j)},
	}, nil
}

func (r renderer) light(l presence.Light) (framed, error) {
	v := newLightView(l)
	return r.frame(evLight, v, v)
}

// avatarSample is how many avatars a large room's card still shows.
const avatarSample = 12

// regions renders the region cards: in a room with more than large users in
// a region, the page shows a sample of avatars and the JSON stream counts.
func (r renderer) regions(rs []presence.RegionView, here string, large int) (framed, error) {
	v := newRegionViews(rs, here)
	return r.frame(evRegions, sampleLarge(v, large, avatarSample), struct {
		Regions []regionView `json:"regions"`
	}{sampleLarge(v, large, -1)})
}

func (r renderer) messages(ms []presence.Message) (framed, error) {
	v := newMessageViews(ms)
	return r.frame(evMessages, v, struct {
		Messages []messageView `json:"messages"`
	}{v})
}

func (r renderer) tabs(n int) (framed, error) {
	return r.frame(evTabs, n, struct {
		Tabs int `json:"tabs"`
	}{n})
}

func (r renderer) latency(lat []presence.Latency) (framed, error) {
	v := newLatencyViews(lat)
	return r.frame(evLatency, v, struct {
		Latency []latencyView `json:"latency"`
	}{v})
}
