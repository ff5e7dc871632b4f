package chaos

import (
	"encoding/json"
	"os"
	"sync"
	"time"
)

// Op kinds: client operations, then the checker's own actions.
const (
	KindToggle = "toggle" // POST /lightbulb, no body
	KindSet    = "set"    // POST /lightbulb state=on|off (Arg)
	KindHi     = "hi"     // POST /hi text=Arg
	KindOpen   = "open"   // GET /events?format=json held open (Stream)
	KindClose  = "close"  // the checker closed Stream
	KindEnded  = "ended"  // the server (or a dead instance) ended Stream
	KindFault  = "fault"  // Arg says which; End is when it was healed
	KindNote   = "note"   // a measurement or an observation, in Body
)

// Op is one entry of the history: what was asked, of whom, when, and what
// the client was told.
type Op struct {
	Seq      int64     `json:"seq"`
	Kind     string    `json:"kind"`
	Instance string    `json:"instance,omitempty"`
	Region   string    `json:"region,omitempty"`
	User     string    `json:"user,omitempty"`
	Stream   int       `json:"stream,omitempty"`
	Arg      string    `json:"arg,omitempty"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Status   int       `json:"status,omitempty"`
	Body     string    `json:"body,omitempty"`
	Err      string    `json:"err,omitempty"`
}

// Outcome is what a client may conclude from an answer to a write.
type Outcome int

const (
	Rejected  Outcome = iota // a 4xx: the app refused it, nothing changed
	Acked                    // the success status: it happened, exactly once
	Ambiguous                // no answer, a timeout or a 5xx: it may or may not have happened
)

// Outcome classifies o's answer; want is the status that means success.
func (o Op) Outcome(want int) Outcome {
	switch {
	case o.Err == "" && o.Status == want:
		return Acked
	case o.Err == "" && o.Status >= 400 && o.Status < 500:
		return Rejected
	default:
		return Ambiguous
	}
}

// History is the run's log of operations, safe for concurrent use.
type History struct {
	mu  sync.Mutex
	ops []Op
}

// Add stamps o with the next sequence number and keeps it.
func (h *History) Add(o Op) Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	o.Seq = int64(len(h.ops) + 1)
	h.ops = append(h.ops, o)
	return o
}

// Ops is a copy of every operation so far, in the order they were added.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Op(nil), h.ops...)
}

// WriteJSONL writes the history, then extra records (violations, final
// states), one JSON object per line.
func (h *History) WriteJSONL(path string, extra ...any) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	for _, o := range h.Ops() {
		if err := enc.Encode(o); err != nil {
			f.Close()
			return err
		}
	}
	for _, x := range extra {
		if err := enc.Encode(x); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}
