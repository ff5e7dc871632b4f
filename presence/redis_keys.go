package presence

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Key layout (presence/PROTOCOL.md tells who writes each and what every
// fault does to them). Every record is owned by one writer, so KeyDB's
// multi-master last-write-wins can never drop a write:
//
//	gp:<room>:light:<region>  hash    flips, last_hlc, last, set_hlc, set: that region's lightbulb record
//	gp:<room>:feed:<region>   list    that region's newest messages (JSON), appended only by it
//	gp:<room>:tabs:<inst>     hash    tab id → tab JSON, plus _seq: that instance's tabs in the room
//	gp:<room>:regions         set     regions that wrote to the room    (SADD only: merges under
//	gp:<room>:insts           set     instances with tabs in the room    any replication)
//	gp::inst:<inst>           string  the instance's region, with a TTL its beat renews: it is alive
//	gp::rooms:<inst>          set     rooms the instance has tabs in, for reaping it
//	gp::rooms                 zset    room → when last used (ms), for retention
//	gp::op:<id>               string  an applied switch or message, kept opKeep: a retry applies nothing
//	gp::epoch                 string  set once the store holds the instances' state: writes need it
//	gp::members:<inst>        hash    <room>:<user> → region, plus _seq: the instance's memberships
//	gp::instances             hash    instance → its last beat (ms), HDEL by a reaper: whose memberships to read
//	gp::hook:<event id>       string  a webhook event some instance queued (10 min): no other sends it
//
// Room names never contain ':' (see ValidRoom), so "gp::" is never a room.
const (
	keyPrefix = "gp:"
	// instPrefix + instance is the instance's liveness key.
	instPrefix = "gp::inst:"
	// roomsPrefix + instance lists the instance's rooms; roomsKey is the
	// index of every room by last use.
	roomsPrefix = "gp::rooms:"
	roomsKey    = "gp::rooms"
	// epochKey marks a store that holds the app's state. A node restarted
	// empty, or a KeyDB node not yet synced from its peers, lacks it, and
	// every write script refuses to write there until an instance has
	// written back what it holds (or the peers' data arrived).
	epochKey = "gp::epoch"
	// roomChannelPrefix + room carries that room's announcements: an
	// instance subscribes only to the rooms it serves. Pub/sub is
	// fire-and-forget: everything on it is a hint a re-read can replace.
	roomChannelPrefix = "gp:room:"
	// pingPrefix + instance is the channel an instance pings itself on,
	// through the write node, to know its subscription still hears it.
	pingPrefix = "gp:ping:"
	// keyspaceFlags are the notifications needed: generic (del) and
	// expired, to see an instance's liveness key vanish.
	keyspaceFlags = "Kgx"
)

func lightKey(room, region string) string { return keyPrefix + room + ":light:" + region }
func feedKey(room, region string) string  { return keyPrefix + room + ":feed:" + region }
func tabsKey(room, inst string) string    { return keyPrefix + room + ":tabs:" + inst }
func regionsKey(room string) string       { return keyPrefix + room + ":regions" }
func instsKey(room string) string         { return keyPrefix + room + ":insts" }
func instKey(inst string) string          { return instPrefix + inst }
func instRoomsKey(inst string) string     { return roomsPrefix + inst }
func opKey(id string) string              { return "gp::op:" + id }
func roomChannel(room string) string      { return roomChannelPrefix + room }
func membersKey(inst string) string       { return "gp::members:" + inst }
func hookKey(id string) string            { return "gp::hook:" + id }
func outboxKey(inst string) string        { return "gp::outbox:" + inst }

const (
	// instancesKey indexes every instance, so that a reader loads every
	// instance's memberships without a SCAN.
	instancesKey = "gp::instances"
	// membersChannel carries every instance's membership changes.
	membersChannel = "gp:members"
)

// wire is a message on a room's channel.
type wire struct {
	Type   string `json:"t"` // light, say, join, leave, tabs (a rewrite)
	Room   string `json:"r"`
	Region string `json:"g,omitempty"`
	Inst   string `json:"i,omitempty"`
	Wall   int64  `json:"w,omitempty"` // origin wall clock, unix ns: for propagation latency
	Tab    *Tab   `json:"tab,omitempty"`
	TabID  string `json:"tid,omitempty"`
	// What changed, so receivers need not re-read it: a new message, or
	// the region's whole lightbulb record after the switch (a flat
	// field/value list, as the script read it).
	Msg *Message `json:"m,omitempty"`
	Rec []string `json:"rec,omitempty"`
	Seq uint64   `json:"s,omitempty"`
}

// maxWire bounds an announcement: the largest, a message or a lightbulb
// record, takes a few hundred bytes.
const maxWire = 64 << 10

// decodeWire reads an announcement heard on channel. Whatever does not hold
// what its type needs is refused, not completed with a guess: a join
// without its tab would otherwise read as a leave, an odd record as a
// record missing its last value.
func decodeWire(channel, msg string) (wire, error) {
	w, err := decodeWhole[wire](msg)
	if err != nil {
		return w, err
	}
	if !ValidRoom(w.Room) || channel != roomChannel(w.Room) {
		return w, errors.New("announcement of another room than its channel's")
	}
	var missing bool
	switch w.Type {
	case "light":
		missing = len(w.Rec)%2 != 0
	case "say":
	case "join":
		missing = w.Inst == "" || w.Seq == 0 || w.Tab == nil
	case "leave":
		missing = w.Inst == "" || w.Seq == 0 || w.TabID == ""
	case "tabs":
		missing = w.Inst == ""
	default:
		return w, fmt.Errorf("unknown announcement type %q", w.Type)
	}
	if missing {
		return w, fmt.Errorf("a %q announcement without what it needs", w.Type)
	}
	return w, nil
}

// decodeWhole decodes one announcement, refusing one too large (before
// allocating anything for it) or followed by anything.
func decodeWhole[T any](msg string) (T, error) {
	var zero T
	if len(msg) > maxWire {
		return zero, fmt.Errorf("announcement of %d bytes, at most %d", len(msg), maxWire)
	}
	v := new(T)
	dec := json.NewDecoder(strings.NewReader(msg))
	if err := dec.Decode(v); err != nil {
		return zero, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return zero, errors.New("data after the announcement")
	}
	return *v, nil
}

// seqTemplate splits the JSON of w around its sequence number, which only the
// script that assigns it knows: the script publishes prefix + seq + "}".
func (w wire) seqTemplate() string { return w.openTemplate("s") }

// openTemplate is the JSON of w opened for one more field, which the script
// writes after it, followed by "}".
func (w wire) openTemplate(field string) string {
	return w.opened() + `"` + field + `":`
}

// opened is the JSON of w opened for more fields: the script writes them,
// then "}".
func (w wire) opened() string {
	w.Seq, w.Rec = 0, nil
	return openJSON(w)
}

// openJSON is the JSON of an object v opened for more fields.
func openJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b[:len(b)-1]) + ","
}

// record decodes the lightbulb record carried by a hint.
func (w wire) record() LightRecord { return decodeFlat(w.Rec) }

// decodeFlat decodes a lightbulb record given as a field/value list.
func decodeFlat(flat []string) LightRecord {
	h := make(map[string]string, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		h[flat[i]] = flat[i+1]
	}
	return decodeLight(h)
}

// recordArgs is a lightbulb record as the switch script takes it: region,
// flips, last_hlc, last, set_hlc, set.
func recordArgs(region string, rec LightRecord) []string {
	args := []string{region, strconv.FormatUint(rec.Flips, 10), "", "", "", ""}
	if rec.Last.HLC != 0 {
		b, _ := json.Marshal(rec.Last)
		args[2], args[3] = hlcHex(rec.Last.HLC), string(b)
	}
	if rec.Set != nil {
		b, _ := json.Marshal(rec.Set)
		args[4], args[5] = hlcHex(rec.Set.HLC), string(b)
	}
	return args
}

func (w wire) encode() string {
	b, _ := json.Marshal(w)
	return string(b)
}

// hlcHex formats a clock value so that string order is numeric order: Lua
// numbers are doubles and would round a 64-bit clock.
func hlcHex(h HLC) string { return fmt.Sprintf("%016x", uint64(h)) }
