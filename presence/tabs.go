package presence

import (
	"sort"
	"time"
)

// Tab is one open page: one SSE connection, owned by the instance serving it.
type Tab struct {
	ID     string    `json:"id"`
	User   UserID    `json:"user"`
	Colour string    `json:"colour"`
	Region string    `json:"region"` // app region serving the connection
	Since  time.Time `json:"since"`
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
}

// GroupTabs turns tabs into region cards: regions and users sorted, so every
// instance renders the same list. A user with tabs in two regions appears in
// both, each tab counted once.
func GroupTabs(tabs []Tab) []RegionView {
	type key struct {
		region string
		user   UserID
	}
	latest := make(map[key]Tab)
	count := make(map[key]int)
	for _, t := range tabs {
		k := key{t.Region, t.User}
		count[k]++
		if l, ok := latest[k]; !ok || t.Since.After(l.Since) || (t.Since.Equal(l.Since) && t.ID > l.ID) {
			latest[k] = t
		}
	}
	byRegion := make(map[string][]UserView)
	for k, t := range latest {
		byRegion[k.region] = append(byRegion[k.region], UserView{ID: k.user, Colour: t.Colour, Tabs: count[k]})
	}
	views := make([]RegionView, 0, len(byRegion))
	for r, users := range byRegion {
		sort.Slice(users, func(i, j int) bool { return users[i].ID < users[j].ID })
		views = append(views, RegionView{Region: r, Users: users})
	}
	sort.Slice(views, func(i, j int) bool { return views[i].Region < views[j].Region })
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
