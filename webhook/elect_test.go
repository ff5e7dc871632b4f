package webhook

import (
	"fmt"
	"testing"
)

// Exactly one instance sends each room, and when one goes only its rooms
// move.
func TestElector(t *testing.T) {
	insts := []string{"ams-1", "ams-2", "iad-1", "syd-1"}
	owner := func(live []string, room string) string {
		var who string
		for _, inst := range live {
			if (&elector{self: inst, live: live}).sends(room) {
				if who != "" {
					t.Fatalf("room %s: both %s and %s send", room, who, inst)
				}
				who = inst
			}
		}
		return who
	}
	moved := 0
	for i := range 1000 {
		room := fmt.Sprint("r/", i)
		before, after := owner(insts, room), owner(insts[1:], room)
		if before == "" {
			t.Fatalf("room %s: nobody sends", room)
		}
		if before != insts[0] && before != after {
			t.Fatalf("room %s moved from %s to %s though %s stayed", room, before, after, before)
		}
		if before != after {
			moved++
		}
	}
	if moved < 150 || moved > 350 {
		t.Errorf("%d of 1000 rooms were the gone instance's: want about a quarter", moved)
	}
	if !(&elector{self: "x"}).sends("r/0") {
		t.Error("without a set of instances, nobody would send")
	}
}
