package handlers

import (
	"fmt"
	"slices"
	"time"

	"globalpresence/presence"
)

// The view types are what both the HTML fragments and the JSON API and
// stream are made of, so the two can never disagree.

type placeView struct {
	Code string `json:"code"`
	City string `json:"city"`
}

func place(code string) placeView { return placeView{Code: code, City: presence.City(code)} }

type lightView struct {
	On     bool       `json:"on"`
	Flips  uint64     `json:"flips"`
	By     string     `json:"by,omitempty"`
	Region string     `json:"region,omitempty"`
	City   string     `json:"city,omitempty"`
	At     *time.Time `json:"at,omitempty"`
}

func newLightView(l presence.Light) lightView {
	v := lightView{On: l.On, Flips: l.Flips, By: l.By.Short(), Region: l.Region}
	if !l.At.IsZero() {
		v.City = presence.City(l.Region)
		v.At = &l.At
	}
	return v
}

type userView struct {
	ID     string `json:"id"`
	Colour string `json:"colour"`
	Tabs   int    `json:"tabs"`
	presence.Profile
}

// Label names a user: by the host site's name for them, else by ID.
func (u userView) Label() string { return label(u.Name, u.ID) }

func label(name, id string) string {
	if name != "" {
		return name
	}
	return "User #" + id
}

// Initials is what an avatar shows.
func (u userView) Initials() string { return u.ID[:min(2, len(u.ID))] }

type regionView struct {
	Region string     `json:"region"`
	City   string     `json:"city"`
	Here   bool       `json:"here"` // the app region serving this page
	Count  int        `json:"count"`
	Users  []userView `json:"users,omitempty"` // all, or a sample in a large room (see More)
	More   int        `json:"more,omitempty"`  // users not listed, in a large room
}

// newRegionViews makes one card per region with viewers, plus the serving
// region's own card even while it is empty.
func newRegionViews(regions []presence.RegionView, here string) []regionView {
	views := make([]regionView, 0, len(regions)+1)
	seen := false
	for _, r := range regions {
		v := regionView{Region: r.Region, City: presence.City(r.Region), Here: r.Region == here, Count: len(r.Users),
			Users: make([]userView, len(r.Users))}
		for i, u := range r.Users {
			v.Users[i] = userView{ID: u.ID.Short(), Colour: u.Colour, Tabs: u.Tabs, Profile: u.Profile}
		}
		seen = seen || v.Here
		views = append(views, v)
	}
	if !seen {
		views = append([]regionView{{Region: here, City: presence.City(here), Here: true, Users: []userView{}}}, views...)
	}
	return views
}

// MoreButYou is More less the viewer, for a page whose viewer is not in the
// sample: they are one of the More, and shown in a slot of their own.
func (v regionView) MoreButYou() int { return v.More - 1 }

// regionsView is who is here: a card per region, and how many people in
// all (a user with tabs in two regions is one person).
type regionsView struct {
	Total   int          `json:"total"`
	Regions []regionView `json:"regions"`
}

// sampleLarge cuts every card with more than large users down to a sample
// of at most sample and large users (the first by ID, so the sample is
// stable between renders) and a count:
// what each update costs then stays the same however big the room grows.
// sample < 0 drops the list altogether.
func sampleLarge(views []regionView, large, sample int) []regionView {
	out := make([]regionView, len(views))
	for i, v := range views {
		if large > 0 && len(v.Users) > large {
			keep := min(max(sample, 0), large)
			v.More = len(v.Users) - keep
			v.Users = v.Users[:keep]
		}
		out[i] = v
	}
	return out
}

// latencyView is one region's propagation delay to this instance.
type latencyView struct {
	presence.Latency
	City string `json:"city"`
}

// Ping is the median delay as shown: tenths of a millisecond below ten.
func (l latencyView) Ping() string {
	if l.P50Ms < 10 {
		return fmt.Sprintf("%.1f ms", l.P50Ms)
	}
	return fmt.Sprintf("%.0f ms", l.P50Ms)
}

// newLatencyViews leaves out the region here: its own figure is the round
// trip through its own store, not a delay from elsewhere, and read as
// "from Sydney" on the Sydney page it looks like a fault.
func newLatencyViews(lat []presence.Latency, here string) []latencyView {
	views := make([]latencyView, 0, len(lat))
	for _, l := range lat {
		if l.Region != here {
			views = append(views, latencyView{Latency: l, City: presence.City(l.Region)})
		}
	}
	return views
}

// latencyLine is the page's latency part: the delays, and where to.
type latencyLine struct {
	Here    placeView
	Regions []latencyView
}

type messageView struct {
	ID     string    `json:"id"`
	User   string    `json:"user"`
	Colour string    `json:"colour"`
	Region string    `json:"region"`
	From   string    `json:"from"`
	City   string    `json:"city"`
	Text   string    `json:"text"`
	At     time.Time `json:"at"`
	presence.Profile
}

// Label names the poster.
func (m messageView) Label() string { return label(m.Name, m.User) }

// Initials is what the poster's avatar shows.
func (m messageView) Initials() string { return m.User[:min(2, len(m.User))] }

// Clock is the UTC time of day shown beside a message.
func (m messageView) Clock() string { return m.At.UTC().Format("15:04:05") }

func newMessageView(m presence.Message) messageView {
	return messageView{ID: m.ID, User: m.User.Short(), Colour: m.Colour, Region: m.Region, From: m.From,
		City: presence.City(m.From), Text: m.Text, At: m.At, Profile: m.Profile}
}

func newMessageViews(ms []presence.Message) []messageView {
	views := make([]messageView, len(ms))
	for i, m := range ms {
		views[i] = newMessageView(m)
	}
	return views
}

// statusView says whether what is shown is live: while the store is lost,
// the last state read is served with live false and the reason.
type statusView struct {
	Live   bool   `json:"live"`
	Reason string `json:"reason,omitempty"`
}

func newStatusView(s presence.Status) statusView {
	return statusView{Live: s.Live, Reason: s.Reason}
}

// stateView is the whole room, as GET /api/state returns it.
type stateView struct {
	Room      string        `json:"room"`
	AppRegion placeView     `json:"app_region"`
	Total     int           `json:"total"` // people here now, in all regions
	Regions   []regionView  `json:"regions"`
	Lightbulb lightView     `json:"lightbulb"`
	Messages  []messageView `json:"messages"`
	// Latency is, per origin region, how long its changes took to get here.
	Latency []latencyView `json:"latency"`
	// Status says whether this is live or the last state read.
	Status statusView `json:"status"`
}

func newStateView(s presence.Snapshot, here string) stateView {
	return stateView{
		Room:      s.Room,
		AppRegion: place(here),
		Total:     len(presence.TabCounts(s.Regions)),
		Regions:   newRegionViews(s.Regions, here),
		Lightbulb: newLightView(s.Light),
		Messages:  newMessageViews(s.Messages),
		Latency:   newLatencyViews(s.Latency, here),
		Status:    newStatusView(s.Status),
	}
}

// youView is the viewer's own card on the page.
type youView struct {
	ID     string
	Colour string
	Edge   placeView
	App    placeView
	Base   string // the room's URL prefix: "" for home, else /rooms/<room>
	// Name and Avatar come from a host site's token, which the page passes
	// on (Token) to its stream and forms.
	Name, Avatar, Token string
}

// Label names the viewer as others see them.
func (y youView) Label() string { return label(y.Name, y.ID) }

// Initials is what the viewer's avatar shows.
func (y youView) Initials() string { return y.ID[:2] }

type pageData struct {
	You       youView
	State     stateView
	Tabs      int
	EventsURL string
	Large     int // above this many users a card shows a sample, as on the stream
	// Nonce lets the page's own <style> (which marks this viewer's avatar
	// in the shared region cards) through the CSP.
	Nonce string
}

// LatencyLine is the page's latency part, as the stream sends it.
func (d pageData) LatencyLine() latencyLine {
	return latencyLine{Here: d.State.AppRegion, Regions: d.State.Latency}
}

// Presence is the page's regions part, as the stream sends it.
func (d pageData) Presence() regionsView {
	return regionsView{Total: d.State.Total, Regions: sampleLarge(d.State.Regions, d.Large, avatarSample)}
}

// badgeSample is how many avatars the embeds' badge shows.
const badgeSample = 8

// badgeView is the embeds' compact presence: everyone here now, a count per
// region, and a few avatars.
type badgeView struct {
	Total   int
	Regions []badgeRegion
	Sample  []userView
	More    int // viewers beyond the sample
}

type badgeRegion struct {
	Region, City string
	Count        int
}

// newBadgeView samples each user once, however many regions they are in
// (tabs through two regions' instances are one viewer); total is the
// people in the room, counted likewise.
func newBadgeView(regions []presence.RegionView, total int) badgeView {
	v := badgeView{Total: total, Regions: make([]badgeRegion, 0, len(regions))}
	var sampled []presence.UserID // at most badgeSample: a scan is cheaper than a map
	for _, r := range regions {
		v.Regions = append(v.Regions, badgeRegion{Region: r.Region, City: presence.City(r.Region), Count: len(r.Users)})
		for _, u := range r.Users {
			if len(v.Sample) == badgeSample {
				break
			}
			if !slices.Contains(sampled, u.ID) {
				sampled = append(sampled, u.ID)
				v.Sample = append(v.Sample, userView{ID: u.ID.Short(), Colour: u.Colour, Tabs: u.Tabs, Profile: u.Profile})
			}
		}
	}
	v.More = v.Total - len(v.Sample)
	return v
}

// badgeTabs is the badge's per-viewer part: who they are, so an embed can
// mark their avatar, and their tabs.
type badgeTabs struct {
	ID   string
	Tabs int
}
