package presence

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	neturl "net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"globalpresence/internal/keylock"
	"globalpresence/internal/shrink"
)

// RedisConfig configures the Redis/KeyDB store.
type RedisConfig struct {
	URL       string        // regional store: reads and subscriptions (redis:// or rediss://)
	WriteURL  string        // optional primary for writes; "" writes to URL (KeyDB multi-master)
	Region    string        // this app region
	Instance  string        // this instance's name (FLY_ALLOC_ID); a per-process suffix is added
	TTL       time.Duration // how long an instance outlives its last heartbeat (6 s)
	Resync    time.Duration // full re-read period, a safety net for lost hints (30 s)
	RoomIdle  time.Duration // a room no local stream asked for this long is forgotten here (30 s)
	Retention time.Duration // a room nobody used this long is deleted from the store (7 days)
	// MaxSkew bounds how far ahead of this machine's clock a remote
	// timestamp may pull the hybrid logical clock (6 h).
	MaxSkew time.Duration
	// Now is the wall clock (time.Now); tests skew it.
	Now func() time.Time
	// OnLatency, if set, hears every propagation delay measured (for metrics).
	OnLatency func(region string, d time.Duration)
	Log       *slog.Logger
}

// writeTimeout bounds a store call made for a request, so that while the
// store is unreachable the request fails fast (503, or the last state read)
// instead of hanging on reconnection attempts.
const writeTimeout = 2 * time.Second

// Redis is the Store for many regions: each region (or instance) writes only
// keys it owns on its regional Redis or KeyDB, every change is announced on a
// pub/sub channel with what changed, and every reader merges all owners'
// records. Each instance keeps the rooms it serves in memory, built from a
// first read and then from the announcements, so a change reaches its
// streams without a read; it re-reads from the store on any doubt (a gap in
// presence deltas, a deleted key), on every (re)subscription and
// periodically.
type Redis struct {
	cfg   RedisConfig
	inst  string
	read  rueidis.Client
	write rueidis.Client
	clock Clock
	lat   *latencies
	log   *slog.Logger
	watchers
	*Members // every instance's memberships: see redis_members.go
	members  memberSync

	db   int64
	work chan func() // the pipeline goroutine hands everything to one worker
	// overflow is set when a hint was dropped: a full re-read must follow.
	overflow   atomic.Bool
	resyncs    atomic.Uint64
	subscribes atomic.Uint64
	announced  atomic.Uint64 // room announcements received
	ctx        context.Context
	cancel     context.CancelFunc
	wg         sync.WaitGroup

	faults     faultCounts
	forgotten  int           // rooms forgotten since memory was last returned; on the worker
	tabLocks   keylock.Locks // see roomLock
	skewLogged atomic.Int64  // when a clock far ahead was last logged, unix ns

	mu     sync.Mutex
	sub    rueidis.DedicatedClient // the subscription, nil while there is none
	beaten bool                    // a beat has reached the store
	rooms  map[string]*redisRoom
	mine   map[string]map[string]Tab // room → this instance's own tabs
	mySeq  map[string]uint64         // room → last sequence this instance published
	stale  map[string]bool           // rooms whose tabs in the store missed a change of ours
	health health
}

var _ Store = (*Redis)(nil)

// NewRedis connects to the store and starts following it. It returns even
// when the store is down (the app serves what it has and says so in Ready);
// it fails only on a bad configuration.
func NewRedis(cfg RedisConfig) (*Redis, error) {
	if cfg.TTL <= 0 {
		cfg.TTL = 6 * time.Second
	}
	if cfg.RoomIdle <= 0 {
		cfg.RoomIdle = 30 * time.Second
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 7 * 24 * time.Hour
	}
	if cfg.Resync <= 0 {
		cfg.Resync = 30 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.MaxSkew <= 0 {
		cfg.MaxSkew = 6 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	opt, err := rueidis.ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("redis URL %s: invalid", Redact(cfg.URL))
	}
	read, err := newRedisClient(cfg.URL)
	if err != nil {
		return nil, err
	}
	write := read
	if cfg.WriteURL != "" {
		if write, err = newRedisClient(cfg.WriteURL); err != nil {
			read.Close()
			return nil, err
		}
	}
	var suffix [3]byte
	_, _ = rand.Read(suffix[:])
	inst := strings.ReplaceAll(cfg.Instance, ":", "-")
	if inst == "" {
		inst = cfg.Region
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Redis{
		cfg:    cfg,
		db:     int64(opt.SelectDB),
		inst:   inst + "-" + hex.EncodeToString(suffix[:]),
		read:   read,
		write:  write,
		clock:  Clock{now: cfg.Now},
		lat:    newLatencies(cfg.OnLatency),
		log:    cfg.Log,
		work:   make(chan func(), 4096),
		ctx:    ctx,
		cancel: cancel,
		rooms:  make(map[string]*redisRoom),
		mine:   make(map[string]map[string]Tab),
		mySeq:  make(map[string]uint64),
		stale:  make(map[string]bool),
		health: health{err: errors.New("not subscribed yet"), read: nodeState{why: "not polled yet"}, write: nodeState{why: "not polled yet"}},
	}
	s.Members, s.members = newMembers(), newMemberSync()
	s.Members.self = s.inst
	s.enableNotifications(ctx)
	s.wg.Add(3)
	go s.worker()
	go s.subscribe()
	go s.watchHealth()
	return s, nil
}

// Redact hides the password in a store URL, for logs and errors.
func Redact(raw string) string {
	u, err := neturl.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

// newRedisClient opens a client that survives the store being down at start
// and reconnects by itself.
func newRedisClient(url string) (rueidis.Client, error) {
	opt, err := rueidis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis URL %s: invalid", Redact(url))
	}
	opt.DisableCache = true      // no client-side caching: pub/sub hints drive re-reads
	opt.ForceSingleClient = true // standalone or replica, never cluster; and start while down
	opt.ConnWriteTimeout = 5 * time.Second
	c, err := rueidis.NewClient(opt)
	if c == nil {
		return nil, fmt.Errorf("redis client for %s: %w", Redact(url), err)
	}
	return c, nil
}

// Resyncs counts full re-reads of the tracked rooms so far.
func (s *Redis) Resyncs() uint64 { return s.resyncs.Load() }

// Announcements counts the room announcements received so far: with a
// subscription per served room, only those of rooms served here.
func (s *Redis) Announcements() uint64 { return s.announced.Load() }

// Reconnects counts subscriptions re-established after the first.
func (s *Redis) Reconnects() uint64 { return max(s.subscribes.Load(), 1) - 1 }

// Instance is this instance's name in the store.
func (s *Redis) Instance() string { return s.inst }

// opKeep is how long an applied switch or message is remembered in the
// store, so that a retry of it applies nothing.
const opKeep = 10 * time.Minute

// Switch implements Store: one script brings the store's records up to
// what this instance holds, applies the switch, announces it and answers
// every region's record, which are folded here.
func (s *Redis) Switch(ctx context.Context, room string, sw Switch) (Light, error) {
	if err := s.writable(); err != nil {
		return Light{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	mode, set := "flip", ""
	op := newOpID()
	now := s.clock.Now()
	for range 3 {
		if sw.Set != nil {
			mode, set = "set", fmt.Sprintf(`{"hlc":%d,"on":%t,"base":`, uint64(now), *sw.Set)
		}
		stamp, _ := json.Marshal(Stamp{HLC: now, By: sw.By, From: sw.From})
		records, ahead, err := s.runSwitch(ctx, room, mode, op, now, string(stamp), set)
		if err != nil {
			return Light{}, s.unavailable(err)
		}
		if ahead == 0 {
			return FoldLight(records), nil
		}
		// A set stored elsewhere carries a later clock than ours: this
		// one was made after it was seen, so it must sort after it.
		s.observe(ahead)
		now = max(s.clock.Now(), ahead+1)
	}
	return Light{}, s.unavailable(errors.New("sets keep racing ahead of this one"))
}

// runSwitch runs the switch script in mode (flip, set or merge) and keeps
// the records it answers; or, when a stored set's clock is not behind this
// set's, applies nothing and answers that clock (ahead).
func (s *Redis) runSwitch(ctx context.Context, room, mode, op string, now HLC, stamp, set string) (records map[string]LightRecord, ahead HLC, err error) {
	hint := wire{Type: "light", Room: room, Wall: s.now().UnixNano()}.opened()
	args := []string{s.cfg.Region, mode, hlcHex(now), stamp, set, roomChannel(room), hint,
		strconv.FormatInt(opKeep.Milliseconds(), 10), lightKey(room, ""), room, strconv.FormatInt(s.now().UnixMilli(), 10)}
	s.mu.Lock()
	if r := s.rooms[room]; r != nil {
		for g, rec := range r.lights {
			args = append(args, recordArgs(g, rec)...)
		}
	}
	s.mu.Unlock()
	res, err := s.exec(ctx, switchScript, []string{lightKey(room, s.cfg.Region), opKey(op), regionsKey(room), roomsKey, epochKey}, args).ToArray()
	if err != nil {
		return nil, 0, err
	}
	if status, _ := res[0].ToString(); status == "clock" {
		newest, _ := res[1].ToString()
		h, _ := strconv.ParseUint(newest, 16, 64)
		return nil, HLC(h), nil
	}
	records = decodeRecords(res[1:])
	s.learnLights(room, records)
	return records, 0, nil
}

// decodeRecords reads the region / record pairs a switch answers.
func decodeRecords(res []rueidis.RedisMessage) map[string]LightRecord {
	records := make(map[string]LightRecord, len(res)/2)
	for i := 0; i+1 < len(res); i += 2 {
		g, _ := res[i].ToString()
		flat, _ := res[i+1].AsStrSlice()
		if len(flat) > 0 {
			records[g] = decodeFlat(flat)
		}
	}
	return records
}

// newOpID names one write, for its idempotency key.
func newOpID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// exec runs a write script, once more if the connection failed under it: a
// pooled connection to a store that restarted fails its first command, and
// every write script is safe to run twice.
func (s *Redis) exec(ctx context.Context, script *rueidis.Lua, keys, args []string) rueidis.RedisResult {
	res := script.Exec(ctx, s.write, keys, args)
	if err := res.Error(); err != nil && connectionFailed(ctx, err) {
		res = script.Exec(ctx, s.write, keys, args)
	}
	return res
}

// connectionFailed tells a broken connection from an answer of the store,
// a cancelled call or a closed client.
func connectionFailed(ctx context.Context, err error) bool {
	_, answered := rueidis.IsRedisErr(err)
	return !answered && ctx.Err() == nil && !errors.Is(err, rueidis.ErrClosing)
}

// Say implements Store.
func (s *Redis) Say(ctx context.Context, room string, p Post) (Message, error) {
	if err := s.writable(); err != nil {
		return Message{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	msg := NewMessage(s.clock.Now(), s.cfg.Region, p)
	if err := s.say(ctx, room, msg); err != nil {
		return Message{}, s.unavailable(err)
	}
	s.learnMessage(room, msg)
	return msg, nil
}

// say stores and announces a message; storing it again does nothing.
func (s *Redis) say(ctx context.Context, room string, msg Message) error {
	b, _ := json.Marshal(msg)
	hint := wire{Type: "say", Room: room, Region: s.cfg.Region, Wall: s.now().UnixNano(), Msg: &msg}.encode()
	return s.exec(ctx, sayScript, []string{feedKey(room, s.cfg.Region), opKey(msg.ID), regionsKey(room), roomsKey, epochKey},
		[]string{string(b), strconv.Itoa(feedKeep), roomChannel(room), hint, strconv.FormatInt(opKeep.Milliseconds(), 10),
			s.cfg.Region, room, strconv.FormatInt(s.now().UnixMilli(), 10)}).Error()
}

// Join implements Store: one script call, O(1) whatever the room's size.
func (s *Redis) Join(ctx context.Context, room string, t Tab) error {
	if s.ctx.Err() != nil {
		return ErrUnavailable // closed: shutting down
	}
	s.mu.Lock()
	if s.mine[room] == nil {
		s.mine[room] = make(map[string]Tab)
	}
	old, ok := s.mine[room][t.ID]
	s.mine[room][t.ID] = t
	s.countTab(room, t, true)
	if ok {
		s.countTab(room, old, false)
	}
	s.mu.Unlock()
	s.notify(Change{Room: room, Parts: PartPresence}) // shown here at once
	tab, _ := json.Marshal(t)
	err := s.publishTab(ctx, room, t.ID, string(tab), wire{Type: "join", Tab: &t})
	return errors.Join(err, s.syncMember(ctx, room, t.User))
}

// Leave implements Store.
func (s *Redis) Leave(ctx context.Context, room string, tabID string) error {
	if s.ctx.Err() != nil {
		return nil // Close already removed every tab of this instance
	}
	s.mu.Lock()
	t, ok := s.mine[room][tabID]
	delete(s.mine[room], tabID)
	if ok {
		s.countTab(room, t, false)
	}
	s.mu.Unlock()
	if !ok {
		return nil
	}
	s.notify(Change{Room: room, Parts: PartPresence})
	err := s.publishTab(ctx, room, tabID, "", wire{Type: "leave", TabID: tabID})
	return errors.Join(err, s.syncMember(ctx, room, t.User))
}

func (s *Redis) publishTab(ctx context.Context, room, tabID, tabJSON string, w wire) error {
	if err := s.writable(); err != nil {
		// The first beat after the store is back rewrites this instance's
		// tabs in the room whole, this change included.
		s.mu.Lock()
		s.stale[room] = true
		s.mu.Unlock()
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	mu := s.roomLock(room)
	mu.Lock()
	defer mu.Unlock()
	w.Room, w.Region, w.Inst, w.Wall = room, s.cfg.Region, s.inst, s.now().UnixNano()
	s.mu.Lock()
	last := s.mySeq[room]
	s.mu.Unlock()
	seq, err := s.exec(ctx, tabScript, s.tabKeys(room), []string{
		tabID, tabJSON, roomChannel(room), w.seqTemplate(), "}", strconv.FormatUint(last, 10),
		s.inst, room, strconv.FormatInt(s.now().UnixMilli(), 10),
	}).AsInt64()
	if err == nil && seq < 0 {
		// Our hash was reaped or lost: this one change would leave our
		// other tabs missing, so write them all.
		err = s.rewriteTabsLocked(ctx, room)
	}
	if err != nil {
		s.mu.Lock()
		s.stale[room] = true
		s.mu.Unlock()
		return s.unavailable(err)
	}
	s.noteSeq(room, uint64(max(seq, 0)))
	return nil
}

// roomLock serialises this instance's tab writes to one room: a rewrite of
// all its tabs must not drop a tab joined while it ran. The writes of one
// room do not wait behind another's round trips.
func (s *Redis) roomLock(room string) *sync.Mutex { return s.tabLocks.For(room) }

func (s *Redis) noteSeq(room string, seq uint64) {
	s.mu.Lock()
	s.mySeq[room] = max(s.mySeq[room], seq)
	s.dropMineIfEmptyLocked(room)
	s.mu.Unlock()
}

// dropMineIfEmptyLocked forgets this instance's record of a room once its
// last tab has left and the store has it so: a room with no viewers here
// costs nothing. The sequence is kept in the tabs hash (its _seq field), so
// a later join continues it. s.mu must be held.
func (s *Redis) dropMineIfEmptyLocked(room string) {
	if len(s.mine[room]) == 0 && !s.stale[room] {
		shrink.Delete(&s.mine, room)
		shrink.Delete(&s.mySeq, room)
	}
}

// Rooms is how many rooms this instance keeps anything of in memory: those
// its streams use (and it is subscribed to), until RoomIdle after their
// last use, and those it has tabs in.
func (s *Redis) Rooms() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	held := make(map[string]bool, len(s.rooms))
	maps.Copy(held, s.stale)
	for room := range s.rooms {
		held[room] = true
	}
	for room := range s.mine {
		held[room] = true
	}
	for room := range s.mySeq {
		held[room] = true
	}
	return len(held)
}

// Snapshot implements Store. A room is read from the store the first time
// it is asked for; from then on it is kept up to date by announcements and
// served from memory, also while the store is down.
func (s *Redis) Snapshot(ctx context.Context, room string, parts Part) (Snapshot, error) {
	s.mu.Lock()
	connected := s.health.subscribed && s.health.read.ok
	s.mu.Unlock()
	if connected { // don't wait on a store that is down
		ctx, cancel := context.WithTimeout(ctx, writeTimeout)
		defer cancel()
		if err := s.track(ctx, room); err != nil {
			s.noteError(err)
		}
	}
	snap := Snapshot{Room: room, Messages: []Message{}, Regions: []RegionView{}}
	var tabs []Tab
	s.mu.Lock()
	if r := s.rooms[room]; r != nil {
		r.lastUsed = time.Now()
		r.fill(&snap, parts)
		if parts&PartPresence != 0 {
			for inst, it := range r.insts {
				if inst != s.inst {
					for _, t := range it.tabs {
						tabs = append(tabs, t)
					}
				}
			}
		}
	}
	if parts&PartPresence != 0 {
		// This instance's own tabs are known here first hand, whatever
		// the store or its replica says.
		for _, t := range s.mine[room] {
			tabs = append(tabs, t)
		}
	}
	s.mu.Unlock()
	if parts&PartPresence != 0 {
		snap.Regions = GroupTabs(tabs) // outside the lock: large rooms take a while
	}
	snap.Latency = s.lat.report(s.now())
	if err := s.judge(time.Now()); err != nil {
		// Public: the details (addresses included) are for /readyz and
		// the logs.
		snap.Status.Reason = "reconnecting to the store"
	} else {
		snap.Status.Live = true
	}
	return snap, nil
}

// knownRegions lists the regions known to have written to room, plus extra.
func (s *Redis) knownRegions(room, extra string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	if r := s.rooms[room]; r != nil {
		for g := range r.regions {
			out = append(out, g)
		}
	}
	if extra != "" && (s.rooms[room] == nil || !s.rooms[room].regions[extra]) {
		out = append(out, extra)
	}
	return out
}

func decodeLight(h map[string]string) LightRecord {
	var rec LightRecord
	rec.Flips, _ = strconv.ParseUint(h["flips"], 10, 64)
	_ = json.Unmarshal([]byte(h["last"]), &rec.Last)
	if h["set"] != "" {
		rec.Set = new(SetOp)
		_ = json.Unmarshal([]byte(h["set"]), rec.Set)
	}
	return rec
}

// readContent reads the lightbulb records and feeds of regions in a room from
// the regional store, in one round trip.
func (s *Redis) readContent(ctx context.Context, room string, regions []string) (content, error) {
	c := s.read
	cmds := make(rueidis.Commands, 0, 2*len(regions))
	for _, g := range regions {
		cmds = append(cmds, c.B().Hgetall().Key(lightKey(room, g)).Build(),
			c.B().Lrange().Key(feedKey(room, g)).Start(0).Stop(-1).Build())
	}
	res := c.DoMulti(ctx, cmds...)
	out := newContent()
	for i, g := range regions {
		h, err := res[2*i].AsStrMap()
		if err != nil {
			return content{}, err
		}
		if len(h) > 0 {
			out.lights[g] = decodeLight(h)
		}
		items, err := res[2*i+1].AsStrSlice()
		if err != nil {
			return content{}, err
		}
		for _, it := range items {
			var m Message
			if json.Unmarshal([]byte(it), &m) == nil {
				out.feeds[g] = append(out.feeds[g], m)
			}
		}
	}
	return out, nil
}

func (s *Redis) noteError(err error) {
	s.mu.Lock()
	s.health.err = err
	s.mu.Unlock()
}

func (s *Redis) unavailable(err error) error {
	if errors.Is(err, context.Canceled) {
		return err // the caller went away
	}
	s.noteError(err)
	re, answered := rueidis.IsRedisErr(err)
	switch {
	case answered && strings.HasPrefix(re.Error(), "UNSYNCED"):
		s.mu.Lock()
		s.health.doubt("the store holds no epoch marker (restarted empty, or not yet synced)", true)
		s.mu.Unlock()
	case !answered && !errors.Is(err, rueidis.ErrClosing):
		s.lost(err)
	}
	return fmt.Errorf("%w: %v", ErrUnavailable, err)
}

// Close implements Store: this instance's tabs leave everywhere at once
// (not after the TTL), then the connections close.
func (s *Redis) Close() error {
	s.cancel() // from here on Join fails and Leave is a no-op
	s.mu.Lock()
	s.mine = map[string]map[string]Tab{}
	s.mu.Unlock()
	// Deleting the liveness key tells every instance at once.
	s.reap(s.inst, true)
	s.wg.Wait()
	s.read.Close()
	if s.write != s.read {
		s.write.Close()
	}
	return nil
}
