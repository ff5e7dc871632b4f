package handlers

import "testing"

// Only an Accept that names text/html above everything else is a browser
// wanting the page back; curl's */* and scripts' JSON are not.
func TestPrefersHTML(t *testing.T) {
	for accept, want := range map[string]bool{
		"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8": true,
		"text/html":                         true,
		"application/json;q=0.5, text/html": true,
		"":                                  false,
		"*/*":                               false,
		"application/json":                  false,
		"application/json, text/html;q=0.5": false,
		"text/html;q=0":                     false,
		"text/*":                            false,
		"text/html;q=x, */*":                false,
	} {
		if got := prefersHTML(accept); got != want {
			t.Errorf("prefersHTML(%q) = %v, want %v", accept, got, want)
		}
	}
}
