package presence

import (
	"regexp"
	"testing"
	"time"
)

func TestIdentity(t *testing.T) {
	s := NewSecret()
	if !ValidSecret(s) || ValidSecret(s[1:]) || ValidSecret("") || ValidSecret(s[:len(s)-1]+"*") {
		t.Fatal("secret validation")
	}
	id := IDFromSecret(s)
	if !regexp.MustCompile(`^[0-9A-F]{32}$`).MatchString(string(id)) || id != IDFromSecret(s) ||
		!regexp.MustCompile(`^[0-9A-F]{8}$`).MatchString(id.Short()) {
		t.Fatalf("bad id %q", id)
	}
	// Flaw 3 of the original: everyone first got SHA-256("") = E3B0C442.
	if id == "E3B0C442" || NewSecret() == s {
		t.Fatal("secrets must be random")
	}
	if !ValidColour(RandomColour()) || !ValidColour(ColourOf(id)) || ValidColour("red; x") {
		t.Fatal("colours must come from the palette")
	}
}

func TestHLCMonotonic(t *testing.T) {
	var c Clock
	prev := c.Now()
	c.Observe(prev+1000, time.Hour)
	for range 1000 {
		h := c.Now()
		if h <= prev {
			t.Fatalf("clock went back: %d after %d", h, prev)
		}
		prev = h
	}
	if prev.Time().IsZero() {
		t.Fatal("no wall time")
	}
}
