package handlers

import (
	"strings"
	"testing"

	"globalpresence/presence"
	"globalpresence/templates"
)

// The total counts people, not cards: a user with tabs in two regions is
// one person, on the page and in JSON.
func TestRegionsTotalCountsEachPersonOnce(t *testing.T) {
	r := pageRenderer(t)
	both, other := presence.UserID("AAAAAAAA"), presence.UserID("BBBBBBBB")
	rs := []presence.RegionView{
		{Region: "ams", Users: []presence.UserView{{ID: both, Colour: "red", Tabs: 1}, {ID: other, Colour: "red", Tabs: 1}}},
		{Region: "syd", Users: []presence.UserView{{ID: both, Colour: "red", Tabs: 2}}},
	}
	ev, err := r.regions(rs, presence.TabCounts(rs), "ams", 50)
	if err != nil {
		t.Fatal(err)
	}
	if html := string(ev[HTML].Frame); !strings.Contains(html, "<strong>2</strong> people here now") {
		t.Errorf("page total: %s", html)
	}
	if js := string(ev[JSON].Frame); !strings.Contains(js, `"total":2`) {
		t.Errorf("JSON total: %s", js)
	}
	if badge := string(ev[Badge].Frame); !strings.Contains(badge, "<strong>2</strong> people here now") ||
		strings.Count(badge, `data-u="`) != 2 || strings.Contains(badge, "gp-more") {
		t.Errorf("badge: total 2 and two avatars, each once: %s", badge)
	}
}

// The latency line says what it measures and to where, and leaves out the
// serving region's own round trip.
func TestLatencyLineIsLabelledWithoutHere(t *testing.T) {
	r := pageRenderer(t)
	ev, err := r.latency([]presence.Latency{{Region: "ams", P50Ms: 0.4}, {Region: "syd", P50Ms: 84}}, "ams")
	if err != nil {
		t.Fatal(err)
	}
	html, js := string(ev[HTML].Frame), string(ev[JSON].Frame)
	if !strings.Contains(html, "Changes made in other regions reach the server in Amsterdam") ||
		!strings.Contains(html, "Sydney 84 ms") || strings.Contains(html, "0.4 ms") {
		t.Errorf("latency line: %s", html)
	}
	if strings.Contains(js, `"ams"`) || !strings.Contains(js, `"syd"`) {
		t.Errorf("latency JSON: %s", js)
	}
	// Nothing to show: no line at all, not a label without figures.
	if ev, _ := r.latency([]presence.Latency{{Region: "ams", P50Ms: 0.4}}, "ams"); string(ev[HTML].Frame) != "event: latency\ndata: \n\n" {
		t.Errorf("latency with only here: %q", ev[HTML].Frame)
	}
}

func pageRenderer(t *testing.T) renderer {
	t.Helper()
	tmpl, err := templates.Parse()
	if err != nil {
		t.Fatal(err)
	}
	return renderer{tmpl: tmpl}
}
