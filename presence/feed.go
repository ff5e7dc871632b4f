package presence

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"time"
)

// FeedLen is how many messages a room shows.
const FeedLen = 10

// feedKeep is how many messages each region keeps of its own feed: more
// than a room shows, so that an instance that missed some (a cut link)
// still finds them when it catches up, and can show each in passing (see
// Snapshot.Recent). A region cut off while another posts more than this
// many in one room shows only the newest of those; the feed itself is
// exact either way.
const feedKeep = 3 * FeedLen

// MaxTextLen is the longest message text, in characters.
const MaxTextLen = 140

// Message is one "say hi".
type Message struct {
	ID     string    `json:"id"`
	HLC    HLC       `json:"hlc"`
	User   UserID    `json:"user"`
	Colour string    `json:"colour"`
	Region string    `json:"region"` // app region that stored it (owns its feed)
	From   string    `json:"from"`   // region the user came through
	Text   string    `json:"text"`
	At     time.Time `json:"at"`
	Profile
}

// Post is what a user asks to say.
type Post struct {
	User   UserID
	Colour string
	From   string
	Text   string
	Profile
}

// NewMessage stamps a message. The ID is unique across regions, so a message
// seen twice (replica and pub/sub, or after a resync) is shown once.
func NewMessage(now HLC, region string, p Post) Message {
	var r [4]byte
	_, _ = rand.Read(r[:])
	return Message{
		ID:      fmt.Sprintf("%016x-%s-%s", uint64(now), region, hex.EncodeToString(r[:])),
		HLC:     now,
		User:    p.User,
		Colour:  p.Colour,
		Region:  region,
		From:    p.From,
		Text:    p.Text,
		At:      now.Time(),
		Profile: p.Profile,
	}
}

// MergeFeeds merges per-region feeds (each region appends only to its own)
// into the newest n messages, newest first, without duplicates. Every region
// sorts by the same key, so every region shows the same feed.
func MergeFeeds(feeds [][]Message, n int) []Message {
	seen := make(map[string]bool)
	all := []Message{}
	for _, f := range feeds {
		for _, m := range f {
			if !seen[m.ID] {
				seen[m.ID] = true
				all = append(all, m)
			}
		}
	}
	sort.Slice(all, func(i, j int) bool { return newer(all[i], all[j]) })
	if len(all) > n {
		all = all[:n]
	}
	return all
}

// AddToFeed adds m to one region's feed (once, however often it arrives),
// keeping the newest keep messages.
func AddToFeed(feed []Message, m Message, keep int) []Message {
	for _, old := range feed {
		if old.ID == m.ID {
			return feed
		}
	}
	feed = append(feed, m)
	if len(feed) <= keep {
		return feed
	}
	oldest := 0
	for i, x := range feed {
		if newer(feed[oldest], x) {
			oldest = i
		}
	}
	return append(feed[:oldest], feed[oldest+1:]...)
}

// newer orders messages as every feed shows them.
func newer(a, b Message) bool {
	if a.HLC != b.HLC {
		return a.HLC > b.HLC
	}
	return a.ID > b.ID
}
