package presence

// content is a room's lightbulb records and feeds by owning region: what
// both stores keep, and merge the same way for a snapshot.
type content struct {
	lights map[string]LightRecord
	feeds  map[string][]Message
}

func newContent() content {
	return content{lights: make(map[string]LightRecord), feeds: make(map[string][]Message)}
}

// fill sets the lightbulb and messages of snap, as far as parts asks.
func (c content) fill(snap *Snapshot, parts Part) {
	if parts&PartLight != 0 {
		snap.Light = FoldLight(c.lights)
	}
	if parts&PartMessages != 0 {
		feeds := make([][]Message, 0, len(c.feeds))
		for _, f := range c.feeds {
			feeds = append(feeds, f)
		}
		snap.Messages = MergeFeeds(feeds, FeedLen)
	}
}
