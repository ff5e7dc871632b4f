package presence

import (
	"math/rand/v2"
	"testing"
)

// Regions apply switches to their own records only; whatever order the
// records replicate in, every region folds the same light.
func TestFoldLightConverges(t *testing.T) {
	var clock Clock
	on, off := true, false
	records := map[string]LightRecord{}
	apply := func(region string, sw Switch) {
		records[region] = ApplySwitch(records, region, sw, clock.Now())
	}
	apply("ams", Switch{By: "A", From: "ams"})  // flip: on
	apply("syd", Switch{By: "S", From: "syd"})  // concurrent flip: off
	apply("iad", Switch{Set: &on, From: "iad"}) // set on, having seen both flips
	apply("ams", Switch{By: "A2", From: "lhr"}) // flip after the set: off
	want := Light{On: false, By: "A2", Region: "lhr"}

	for range 20 {
		// Another region receives the records in a random order.
		copyOf := map[string]LightRecord{}
		keys := []string{"ams", "syd", "iad"}
		rand.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
		for _, k := range keys {
			copyOf[k] = records[k]
		}
		got := FoldLight(copyOf)
		if got.On != want.On || got.By != want.By || got.Region != want.Region {
			t.Fatalf("fold = %+v, want %+v", got, want)
		}
	}

	// A set that had not seen a concurrent remote flip keeps that flip on top.
	apply("syd", Switch{Set: &off})
	rec := records["syd"]
	rec.Set.Base["ams"]-- // as if syd had not yet seen ams's last flip
	records["syd"] = rec
	if got := FoldLight(records); !got.On {
		t.Fatalf("unseen flip must apply after the set: %+v", got)
	}
}

func TestFoldLightEmpty(t *testing.T) {
	if l := FoldLight(nil); l.On || !l.At.IsZero() || l.By != "" {
		t.Fatalf("empty fold: %+v", l)
	}
}

func TestLaterBreaksTiesByRegion(t *testing.T) {
	if !later(5, "b", 5, "a") || later(5, "a", 5, "b") || !later(6, "a", 5, "z") {
		t.Fatal("later must order by HLC then region")
	}
}

// A region's record read from the store and the same record carried by
// hints, in any order and with repeats, join to the newest reading.
func TestJoinLightKeepsTheNewest(t *testing.T) {
	var clock Clock
	on := true
	var readings []LightRecord
	rec := LightRecord{}
	for i := range 6 {
		sw := Switch{By: UserID(rune('A' + i)), From: "ams"}
		if i == 3 {
			sw.Set = &on
		}
		rec = ApplySwitch(map[string]LightRecord{"ams": rec}, "ams", sw, clock.Now())
		readings = append(readings, rec)
	}
	newest := readings[len(readings)-1]
	for range 20 {
		got := LightRecord{}
		for _, i := range rand.Perm(len(readings)) {
			got = JoinLight(got, readings[i])
			got = JoinLight(got, readings[rand.IntN(len(readings))])
		}
		if FoldLight(map[string]LightRecord{"ams": got}) != FoldLight(map[string]LightRecord{"ams": newest}) || got.Flips != newest.Flips {
			t.Fatalf("joined %+v, want %+v", got, newest)
		}
	}
}
