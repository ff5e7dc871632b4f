package presence

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/redis/rueidis"
)

// Key layout. Every key is owned by one writer, so KeyDB's multi-master
// last-write-wins can never drop a write and replicas never disagree:
//
//	gp:<room>:light:<region>  hash  flips, last_hlc, last, set_hlc, set — that region's lightbulb record
//	gp:<room>:feed:<region>   list  that region's newest messages (JSON), appended only by it
//	gp:<room>:tabs:<inst>     hash  tab id → tab JSON, plus _seq; TTL renewed by the instance's heartbeat
//
// Room, region and instance names never contain ':' (see ValidRoom).
const (
	keyPrefix = "gp:"
	// eventsChannel carries change hints and presence deltas from every
	// instance. Pub/sub is fire-and-forget: everything on it is a hint that
	// a re-read can replace.
	eventsChannel = "gp:events"
	// keyspaceFlags are the notifications needed: generic (del, expire)
	// and expired, to see instances' presence vanish. Writes are announced on
	// eventsChannel, which carries who and when.
	keyspaceFlags = "Kgx"
)

func lightKey(room, region string) string { return keyPrefix + room + ":light:" + region }
func feedKey(room, region string) string  { return keyPrefix + room + ":feed:" + region }
func tabsKey(room, inst string) string    { return keyPrefix + room + ":tabs:" + inst }

// parseKey splits a key into room, kind (light, feed, tabs) and owner.
func parseKey(key string) (room, kind, owner string, ok bool) {
	rest, found := strings.CutPrefix(key, keyPrefix)
	if !found {
		return "", "", "", false
	}
	parts := strings.Split(rest, ":")
	if len(parts) != 3 {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// wire is a message on eventsChannel.
type wire struct {
	Type   string `json:"t"` // light, say, join, leave, beat, bye
	Room   string `json:"r"`
	Region string `json:"g"`
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

// seqTemplate splits the JSON of w around its sequence number, which only the
// script that assigns it knows: the script publishes prefix + seq + "}".
func (w wire) seqTemplate() string { return w.openTemplate("s") }

// openTemplate is the JSON of w opened for one more field, which the script
// writes after it, followed by "}".
func (w wire) openTemplate(field string) string {
	w.Seq, w.Rec = 0, nil
	b, _ := json.Marshal(w)
	return string(b[:len(b)-1]) + `,"` + field + `":`
}

// record decodes the lightbulb record carried by a hint.
func (w wire) record() LightRecord {
	h := make(map[string]string, len(w.Rec)/2)
	for i := 0; i+1 < len(w.Rec); i += 2 {
		h[w.Rec[i]] = w.Rec[i+1]
	}
	return decodeLight(h)
}

func (w wire) encode() string {
	b, _ := json.Marshal(w)
	return string(b)
}

// hlcHex formats a clock value so that string order is numeric order: Lua
// numbers are doubles and would round a 64-bit clock.
func hlcHex(h HLC) string { return fmt.Sprintf("%016x", uint64(h)) }

// switchScript applies one lightbulb switch to the region's record: a flip
// increments the counter; "last" and "set" are registers that only move
// forward in clock order. Then it announces the change with the record as
// it now is. Running it twice with one operation ID (a retry) applies it
// once.
//
// KEYS[1] light key; ARGV: flip (1/0), hlc hex, stamp JSON, set JSON or "",
// channel, message opened for the record, operation ID.
var switchScript = rueidis.NewLuaScript(`
if redis.call('HGET', KEYS[1], 'op') == ARGV[7] then return 0 end
redis.call('HSET', KEYS[1], 'op', ARGV[7])
if ARGV[1] == '1' then redis.call('HINCRBY', KEYS[1], 'flips', 1) end
local last = redis.call('HGET', KEYS[1], 'last_hlc')
if (not last) or last < ARGV[2] then redis.call('HSET', KEYS[1], 'last_hlc', ARGV[2], 'last', ARGV[3]) end
if ARGV[4] ~= '' then
  local set = redis.call('HGET', KEYS[1], 'set_hlc')
  if (not set) or set < ARGV[2] then redis.call('HSET', KEYS[1], 'set_hlc', ARGV[2], 'set', ARGV[4]) end
end
redis.call('PUBLISH', ARGV[5], ARGV[6] .. cjson.encode(redis.call('HGETALL', KEYS[1])) .. '}')
return 1`)

// sayScript appends a message to the region's feed, keeps it short and
// announces it; a retry finds the message already last and does nothing.
// KEYS[1] feed key; ARGV: message JSON, length kept, channel, announcement.
var sayScript = rueidis.NewLuaScript(`
if redis.call('LINDEX', KEYS[1], -1) == ARGV[1] then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1`)

// tabScript adds (tab JSON given) or removes a tab of this instance, numbers
// the change and publishes it as a delta, all at once: receivers apply
// deltas in sequence and re-read the hash when they see a gap. The sequence
// never goes below the instance's last known one (ARGV[7]), even if the hash
// expired meanwhile. Returns 0 when nothing changed.
//
// KEYS[1] tabs key; ARGV: tab id, tab JSON or "", TTL ms, channel, message
// prefix, message suffix, last known sequence.
var tabScript = rueidis.NewLuaScript(`
local n
if ARGV[2] ~= '' then n = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
else n = redis.call('HDEL', KEYS[1], ARGV[1]) end
if n == 0 then return 0 end
local seq = redis.call('HINCRBY', KEYS[1], '_seq', 1)
if seq <= tonumber(ARGV[7]) then
  seq = tonumber(ARGV[7]) + 1
  redis.call('HSET', KEYS[1], '_seq', seq)
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5] .. seq .. ARGV[6])
return seq`)

// beatScript renews the instance's presence in a room and publishes its
// current sequence, so a receiver that missed a delta notices within one
// beat. Returns -1 when the hash is gone (expired or lost with a store
// restart): the instance then writes it again.
//
// KEYS[1] tabs key; ARGV: TTL ms, channel, message prefix, message suffix.
var beatScript = rueidis.NewLuaScript(`
if redis.call('PEXPIRE', KEYS[1], ARGV[1]) == 0 then return -1 end
local seq = redis.call('HGET', KEYS[1], '_seq') or '0'
redis.call('PUBLISH', ARGV[2], ARGV[3] .. seq .. ARGV[4])
return tonumber(seq)`)

// restoreScript rewrites the instance's whole presence in a room.
// KEYS[1] tabs key; ARGV: TTL ms, channel, message prefix, message suffix,
// sequence, then tab id / tab JSON pairs.
var restoreScript = rueidis.NewLuaScript(`
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], '_seq', ARGV[5])
for i = 6, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i+1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3] .. ARGV[5] .. ARGV[4])
return tonumber(ARGV[5])`)
