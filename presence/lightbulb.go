package presence

import "time"

// Light is the lightbulb as every viewer sees it.
type Light struct {
	On bool `json:"on"`
	// Flips counts every toggle ever made, in all regions: what lets a
	// client (and a test) tell that no flip was lost or counted twice.
	Flips  uint64    `json:"flips"`
	By     UserID    `json:"by,omitempty"`
	Region string    `json:"region,omitempty"`
	At     time.Time `json:"at,omitzero"`
}

// Switch is one request to change the lightbulb: toggle it (Set nil) or set it.
type Switch struct {
	Set  *bool
	By   UserID
	From string // region the user came through
}

// LightRecord is one region's share of the lightbulb. Each region writes only
// its own record and every reader folds all of them (FoldLight), so regions
// never overwrite each other and concurrent flips are all counted: the flip
// counters add up, while an explicit set is a last-writer-wins register.
type LightRecord struct {
	Flips uint64 `json:"flips"` // toggles made in this region, ever
	Last  Stamp  `json:"last"`  // the latest toggle or set made here
	Set   *SetOp `json:"set,omitempty"`
}

// Stamp says who last changed the lightbulb, from where and when.
type Stamp struct {
	HLC  HLC    `json:"hlc"`
	By   UserID `json:"by"`
	From string `json:"from"`
}

// SetOp is an explicit "on" or "off". Base records every region's flip
// counter as seen when it was made: only flips beyond those apply after it.
type SetOp struct {
	HLC  HLC               `json:"hlc"`
	On   bool              `json:"on"`
	Base map[string]uint64 `json:"base,omitempty"`
}

// ApplySwitch returns region's record after sw, given all current records
// (for a set's base). The caller stores it atomically with respect to other
// writers of the same region.
func ApplySwitch(records map[string]LightRecord, region string, sw Switch, now HLC) LightRecord {
	rec := records[region]
	rec.Last = Stamp{HLC: now, By: sw.By, From: sw.From}
	if sw.Set == nil {
		rec.Flips++
		return rec
	}
	base := make(map[string]uint64, len(records))
	for r, other := range records {
		base[r] = other.Flips
	}
	rec.Set = &SetOp{HLC: now, On: *sw.Set, Base: base}
	return rec
}

// FoldLight merges every region's record into the state all regions agree on
// once they have seen the same records, whatever order they arrived in.
func FoldLight(records map[string]LightRecord) Light {
	var (
		set       SetOp
		setRegion string
		last      Stamp
		lastReg   string
		flips     int64
		total     uint64
	)
	for region, rec := range records {
		flips += int64(rec.Flips)
		total += rec.Flips
		if rec.Set != nil && later(rec.Set.HLC, region, set.HLC, setRegion) {
			set, setRegion = *rec.Set, region
		}
		if later(rec.Last.HLC, region, last.HLC, lastReg) {
			last, lastReg = rec.Last, region
		}
	}
	for _, n := range set.Base {
		flips -= int64(n)
	}
	l := Light{On: set.On != (flips%2 != 0), Flips: total, By: last.By, Region: last.From}
	if last.HLC != 0 {
		l.At = last.HLC.Time()
	}
	return l
}

// later orders (timestamp, region) pairs; the region breaks exact ties.
func later(h HLC, region string, than HLC, thanRegion string) bool {
	return h > than || (h == than && region > thanRegion)
}

// JoinLight merges two readings of one region's record, whichever is newer:
// the counter and both registers only move forward, so the result is the same
// in any order and a stale reading never undoes a newer one.
func JoinLight(a, b LightRecord) LightRecord {
	out := a
	out.Flips = max(a.Flips, b.Flips)
	if b.Last.HLC > a.Last.HLC {
		out.Last = b.Last
	}
	if b.Set != nil && (a.Set == nil || b.Set.HLC > a.Set.HLC) {
		out.Set = b.Set
	}
	return out
}
