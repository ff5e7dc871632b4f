package handlers

import (
	"bytes"
	"fmt"
	"testing"

	"globalpresence/presence"
	"globalpresence/templates"
)

// The feed built from cached fragments is exactly what rendering the whole
// feed with the template and encoding/json gives, as messages come and go.
func TestMessagesFromFragmentsMatchTheTemplate(t *testing.T) {
	tmpl, err := templates.Parse()
	if err != nil {
		t.Fatal(err)
	}
	r := renderer{tmpl: tmpl}
	var clock presence.Clock
	var all []presence.Message
	for i := range 15 {
		all = append(all, presence.NewMessage(clock.Now(), "ams", presence.Post{
			User: "ABCDEF01", Colour: "red", From: "syd", Text: fmt.Sprintf(`hi <b>"%d"</b> & 👋`, i)}))
	}
	var cache messageRenders
	for n := 0; n <= len(all); n++ {
		feed := presence.MergeFeeds([][]presence.Message{all[:n]}, presence.FeedLen)
		got, next, err := r.messages(feed, cache)
		if err != nil {
			t.Fatal(err)
		}
		cache = next
		v := newMessageViews(feed)
		want, err := r.frame(evMessages, v, struct {
			Messages []messageView `json:"messages"`
		}{v})
		if err != nil {
			t.Fatal(err)
		}
		for f := range numFormats {
			if !bytes.Equal(got[f].Frame, want[f].Frame) {
				t.Fatalf("%d messages, format %d:\n got %q\nwant %q", n, f, got[f].Frame, want[f].Frame)
			}
		}
		if len(cache) != len(feed) {
			t.Fatalf("%d fragments kept for a feed of %d", len(cache), len(feed))
		}
	}
}
