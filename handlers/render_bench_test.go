package handlers

import (
	"fmt"
	"testing"
	"time"

	"globalpresence/presence"
	"globalpresence/templates"
)

func benchRenderer(b *testing.B) renderer {
	tmpl, err := templates.Parse()
	if err != nil {
		b.Fatal(err)
	}
	return renderer{tmpl: tmpl}
}

func benchRegions(users int) []presence.RegionView {
	tabs := make([]presence.Tab, users)
	for i := range tabs {
		tabs[i] = presence.Tab{ID: fmt.Sprint(i), User: presence.UserID(fmt.Sprintf("%08X", i)), Colour: "teal",
			Region: []string{"ams", "iad", "syd"}[i%3], Since: time.Unix(int64(i), 0)}
	}
	return presence.GroupTabs(tabs)
}

// Rendering is done once per change for all clients: these are its costs.
func BenchmarkRenderRegions(b *testing.B) {
	r := benchRenderer(b)
	for _, users := range []int{30, 10000} {
		regions := benchRegions(users)
		b.Run(fmt.Sprintf("users=%d", users), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.regions(regions, presence.TabCounts(regions), "ams", 50); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRenderMessages(b *testing.B) {
	r := benchRenderer(b)
	var clock presence.Clock
	msgs := make([]presence.Message, presence.FeedLen)
	for i := range msgs {
		msgs[i] = presence.NewMessage(clock.Now(), "ams", presence.Post{User: "ABCDEF01", Colour: "red", From: "syd", Text: "Hi from Sydney 👋 <b>escaped</b>"})
	}
	// A feed seen for the first time, and the usual case: one new message
	// in a feed rendered before.
	_, prev, err := r.messages(msgs[1:], nil)
	if err != nil {
		b.Fatal(err)
	}
	for name, cache := range map[string]messageRenders{"all-new": nil, "one-new": prev} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := r.messages(msgs, cache); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRenderLight(b *testing.B) {
	r := benchRenderer(b)
	l := presence.Light{On: true, By: "ABCDEF01", Region: "syd", At: time.Now()}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.light(l); err != nil {
			b.Fatal(err)
		}
	}
}
