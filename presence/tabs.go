package presence

import (
	"slices"
	"strings"
	"time"
)

// Tab is one open page: one SSE connection, owned by the instance serving it.
type Tab struct {
	ID     string    `json:"id"`
	User   UserID    `json:"user"`
	Colour string    `json:"colour"`
	Region string    `json:"region"` // app region serving the connection
	Since  time.Time `json:"since"`
	Profile
}

// RegionView is one region's card: the users viewing through it.
type RegionView struct {
	Region string     `json:"region"`
	Users  []UserView `json:"users"`
}

// UserView is one user in one region.
type UserView struct {
	ID     UserID `json:"id"`
	Colour string `json:"colour"` // of their most recently opened tab there
	Tabs   int    `json:"tabs"`
	Profile
}

// GroupTabs turns tabs into region cards: regions and users sorted, so every
// instance renders the same list. A user with tabs in two regions appears in
// both, each tab counted once. It runs on every presence render, so it
// makes one pass with one map and one sort.
func GroupTabs(tabs []Tab) []RegionView {
	type key struct {
		region string
		user   UserID
	}
	type agg struct {
		latest int // index in tabs of the user's newest tab in the region
		n      int
	}
	index := make(map[key]int, len(tabs))
	aggs := make([]agg, 0, len(tabs))
	for i := range tabs {
		t := &tabs[i]
		k := key{t.Region, t.User}
		j, ok := index[k]
		if !ok {
			index[k] = len(aggs)
			aggs = append(aggs, agg{latest: i, n: 1})
			continue
		}
		a := &aggs[j]
		a.n++
		if l := &tabs[a.latest]; t.Since.After(l.Since) || (t.Since.Equal(l.Since) && t.ID > l.ID) {
			a.latest = i
		}
	}
	slices.SortFunc(aggs, func(a, b agg) int {
		ta, tb := &tabs[a.latest], &tabs[b.latest]
		if c := strings.Compare(ta.Region, tb.Region); c != 0 {
			return c
		}
		return strings.Compare(string(ta.User), string(tb.User))
	})
	views := []RegionView{}
	for _, a := range aggs {
		t := &tabs[a.latest]
		if len(views) == 0 || views[len(views)-1].Region != t.Region {
			views = append(views, RegionView{Region: t.Region})
		}
		v := &views[len(views)-1]
		v.Users = append(v.Users, UserView{ID: t.User, Colour: t.Colour, Tabs: a.n, Profile: t.Profile})
	}
	return views
}

// TabCounts counts each user's open tabs across every region.
func TabCounts(regions []RegionView) map[UserID]int {
	counts := make(map[UserID]int)
	for _, r := range regions {
		for _, u := range r.Users {
			counts[u.ID] += u.Tabs
		}
	}
	return counts
}
