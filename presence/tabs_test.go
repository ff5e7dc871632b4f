package presence

import (
	"testing"
	"time"
)

func TestGroupTabs(t *testing.T) {
	t0 := time.Now()
	tabs := []Tab{
		{ID: "1", User: "B", Colour: "red", Region: "syd", Since: t0},
		{ID: "2", User: "B", Colour: "blue", Region: "syd", Since: t0.Add(time.Second)},
		{ID: "3", User: "B", Colour: "teal", Region: "ams", Since: t0},
		{ID: "4", User: "A", Colour: "pink", Region: "syd", Since: t0},
	}
	got := GroupTabs(tabs)
	if len(got) != 2 || got[0].Region != "ams" || got[1].Region != "syd" {
		t.Fatalf("regions: %+v", got)
	}
	syd := got[1].Users
	if len(syd) != 2 || syd[0].ID != "A" || syd[1].ID != "B" || syd[1].Tabs != 2 || syd[1].Colour != "blue" {
		t.Fatalf("syd users: %+v", syd)
	}
	// Flaw 9 of the original: a user in two regions was counted twice.
	if n := TabCounts(got)["B"]; n != 3 {
		t.Fatalf("B has %d tabs, want 3", n)
	}
	if n := TabCounts(got)["nobody"]; n != 0 {
		t.Fatalf("nobody has %d tabs", n)
	}
	if g := GroupTabs(nil); g == nil || len(g) != 0 {
		t.Fatalf("no tabs: %+v", g)
	}
}
