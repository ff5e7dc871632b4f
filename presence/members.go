package presence

import (
	"maps"
	"slices"
	"strings"
	"sync"

	"globalpresence/internal/shrink"
)

// Occupancy answers the rooms API from memory: which rooms are occupied,
// by how many users, and which rooms a user is in. Both stores implement it
// with Members, so an answer costs O(occupied rooms) or O(the user's rooms),
// never a read of every tab.
type Occupancy interface {
	// Occupied lists the occupied rooms whose name starts with prefix, most
	// viewers first (ties by name), at most limit of them.
	Occupied(prefix string, limit int) []RoomCount
	// UserRooms lists the rooms user is in, by name.
	UserRooms(user UserID) []string
}

// RoomCount is one occupied room: its distinct users anywhere, and per app
// region the distinct users served there (a user with tabs in two regions
// counts in both, and once in Viewers).
type RoomCount struct {
	Room    string         `json:"room"`
	Viewers int            `json:"viewers"`
	Regions map[string]int `json:"regions"`
}

// member is one user in one room, as one instance holds it.
type member struct {
	Room string
	User UserID
}

// MemberEventType names a global transition of the membership.
type MemberEventType string

// The transitions Members reports, as seen from the merged global view.
const (
	RoomOccupied  MemberEventType = "room.occupied"  // its first user anywhere
	RoomVacated   MemberEventType = "room.vacated"   // its last user anywhere left
	MemberAdded   MemberEventType = "member.added"   // a user's first instance in the room
	MemberRemoved MemberEventType = "member.removed" // a user's last instance in the room left (or died)
)

// MemberEvent is one global transition; Inst and Region are the instance
// whose membership caused it ("" in the memory store) and its region. Gone
// says a removal came with the whole instance (dead, or closed), not a
// closing tab: no reload will undo it. Initial says it came while this
// instance first loaded what was there before it started: not a change.
type MemberEvent struct {
	Type    MemberEventType
	Room    string
	User    UserID
	Inst    string
	Region  string
	Gone    bool
	Initial bool
}

// Members is the global membership index: which instances (in which
// region) have a user in a room. Each instance's memberships are set by
// that instance alone (first hand for this one, from the store for the
// others); every query and global transition derives from their union,
// maintained incrementally.
type Members struct {
	mu        sync.Mutex
	byInst    map[string]map[member]string // instance → its memberships → its region
	rooms     map[string]*roomMembers
	userRooms map[UserID][]string // nearly always one room: a slice, not a map per user
	observers []func(MemberEvent)
	self      string // this instance: its own changes are transitions from the start
	primed    bool   // see prime
}

// roomMembers is one occupied room: where each user is held, and per
// region how many distinct users.
type roomMembers struct {
	users   map[UserID]holders
	regions holders // counting users, not instances
}

// holders counts something per region: the instances holding one user in
// one room, or a room's users. Nearly always one region: a short slice,
// where a map cost a few hundred bytes each at 19,000 users or 5,000 rooms.
type holders []regionCount

type regionCount struct {
	region string
	n      int
}

// add counts one in region and tells whether it is the region's first.
func (h *holders) add(region string) bool {
	for i := range *h {
		if (*h)[i].region == region {
			(*h)[i].n++
			return false
		}
	}
	*h = append(*h, regionCount{region, 1})
	return true
}

// remove uncounts one in region and tells whether it was the region's last.
func (h *holders) remove(region string) bool {
	i := slices.IndexFunc(*h, func(c regionCount) bool { return c.region == region })
	if (*h)[i].n--; (*h)[i].n > 0 {
		return false
	}
	*h = slices.Delete(*h, i, i+1)
	return true
}

var _ Occupancy = (*Members)(nil)

func newMembers() *Members {
	return &Members{
		byInst:    make(map[string]map[member]string),
		rooms:     make(map[string]*roomMembers),
		userRooms: make(map[UserID][]string),
	}
}

// prime marks the first load of what other instances hold as done: what
// changes from then on are transitions.
func (m *Members) prime() {
	m.mu.Lock()
	m.primed = true
	m.mu.Unlock()
}

// Observe registers fn to hear every global transition, in order. It runs
// under the index's lock: it must be quick and must not call Members.
func (m *Members) Observe(fn func(MemberEvent)) {
	m.mu.Lock()
	m.observers = append(m.observers, fn)
	m.mu.Unlock()
}

// Occupied implements Occupancy.
func (m *Members) Occupied(prefix string, limit int) []RoomCount {
	type found struct {
		name string
		r    *roomMembers
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var all []found
	for name, r := range m.rooms {
		if strings.HasPrefix(name, prefix) {
			all = append(all, found{name, r})
		}
	}
	slices.SortFunc(all, func(a, b found) int {
		if a, b := len(a.r.users), len(b.r.users); a != b {
			return b - a
		}
		return strings.Compare(a.name, b.name)
	})
	out := make([]RoomCount, 0, min(len(all), limit))
	for _, f := range all[:min(len(all), limit)] {
		regions := make(map[string]int, len(f.r.regions))
		for _, c := range f.r.regions {
			regions[c.region] = c.n
		}
		out = append(out, RoomCount{Room: f.name, Viewers: len(f.r.users), Regions: regions})
	}
	return out
}

// UserRooms implements Occupancy.
func (m *Members) UserRooms(user UserID) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	rooms := slices.Clone(m.userRooms[user])
	slices.Sort(rooms)
	return rooms
}

// instances lists the instances holding memberships.
func (m *Members) instances() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Collect(maps.Keys(m.byInst))
}

// has tells whether inst holds mb.
func (m *Members) has(inst string, mb member) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.byInst[inst][mb]
	return ok
}

// of returns a copy of inst's memberships.
func (m *Members) of(inst string) map[member]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.byInst[inst])
}

// set adds (region != "") or removes one membership of inst.
func (m *Members) set(inst string, mb member, region string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if region != "" {
		m.addLocked(inst, mb, region)
	} else {
		m.delLocked(inst, mb, false)
	}
}

// replace makes all (nil: none) the memberships of inst; only the
// differences change anything, so a re-read that finds what was known
// reports nothing.
func (m *Members) replace(inst string, all map[member]string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for mb, region := range m.byInst[inst] {
		if all[mb] != region {
			m.delLocked(inst, mb, all == nil)
		}
	}
	for mb, region := range all {
		m.addLocked(inst, mb, region)
	}
}

func (m *Members) addLocked(inst string, mb member, region string) {
	mine := m.byInst[inst]
	if mine == nil {
		mine = make(map[member]string)
		m.byInst[inst] = mine
	}
	if _, ok := mine[mb]; ok {
		return
	}
	mine[mb] = region
	r := m.rooms[mb.Room]
	if r == nil {
		r = &roomMembers{users: make(map[UserID]holders)}
		m.rooms[mb.Room] = r
		m.emit(MemberEvent{Type: RoomOccupied, Room: mb.Room, User: mb.User, Inst: inst, Region: region})
	}
	where, held := r.users[mb.User]
	if !held {
		m.userRooms[mb.User] = append(m.userRooms[mb.User], mb.Room)
		m.emit(MemberEvent{Type: MemberAdded, Room: mb.Room, User: mb.User, Inst: inst, Region: region})
	}
	if where.add(region) {
		r.regions.add(region)
	}
	r.users[mb.User] = where
}

func (m *Members) delLocked(inst string, mb member, gone bool) {
	region, ok := m.byInst[inst][mb]
	if !ok {
		return
	}
	mine := m.byInst[inst]
	if shrink.Delete(&mine, mb); len(mine) == 0 {
		delete(m.byInst, inst)
	} else {
		m.byInst[inst] = mine
	}
	r := m.rooms[mb.Room]
	where := r.users[mb.User]
	if where.remove(region) {
		r.regions.remove(region)
	}
	if len(where) > 0 {
		r.users[mb.User] = where
		return
	}
	shrink.Delete(&r.users, mb.User)
	if rooms := slices.DeleteFunc(m.userRooms[mb.User], func(room string) bool { return room == mb.Room }); len(rooms) > 0 {
		m.userRooms[mb.User] = rooms
	} else {
		shrink.Delete(&m.userRooms, mb.User)
	}
	m.emit(MemberEvent{Type: MemberRemoved, Room: mb.Room, User: mb.User, Inst: inst, Region: region, Gone: gone})
	if len(r.users) == 0 {
		shrink.Delete(&m.rooms, mb.Room)
		m.emit(MemberEvent{Type: RoomVacated, Room: mb.Room, User: mb.User, Inst: inst, Region: region, Gone: gone})
	}
}

// emit runs under m.mu.
func (m *Members) emit(e MemberEvent) {
	e.Initial = !m.primed && e.Inst != m.self
	for _, fn := range m.observers {
		fn(e)
	}
}

// tabRefs counts one instance's tabs per membership: a membership starts
// with its first tab and ends with its last.
type tabRefs map[member]int

// add counts a tab and tells whether it is the membership's first.
func (r tabRefs) add(room string, t Tab) bool {
	mb := member{room, t.User}
	r[mb]++
	return r[mb] == 1
}

// remove uncounts a tab and tells whether it was the membership's last.
func (r *tabRefs) remove(room string, t Tab) bool {
	mb := member{room, t.User}
	if (*r)[mb]--; (*r)[mb] > 0 {
		return false
	}
	shrink.Delete(r, mb)
	return true
}
