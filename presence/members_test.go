package presence

import (
	"context"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"testing"
)

func roomsOf(m *Members, prefix string, limit int) string {
	return fmt.Sprint(m.Occupied(prefix, limit))
}

// Viewers are distinct users across instances and regions; each region
// counts its distinct users; rooms come most viewers first, ties by name.
func TestMembersCounts(t *testing.T) {
	m := newMembers()
	m.set("ams-1", member{"a", "U"}, "ams")
	m.set("ams-2", member{"a", "U"}, "ams") // U again, another instance in ams
	m.set("syd-1", member{"a", "U"}, "syd") // and in syd
	m.set("ams-1", member{"a", "V"}, "ams")
	m.set("ams-1", member{"b", "U"}, "ams")
	m.set("ams-1", member{"b", "W"}, "ams")
	m.set("syd-1", member{"c", "X"}, "syd")
	m.set("ams-1", member{"a", "V"}, "ams") // twice: once
	want := "[{a 2 map[ams:2 syd:1]} {b 2 map[ams:2]} {c 1 map[syd:1]}]"
	if got := roomsOf(m, "", 100); got != want {
		t.Fatalf("rooms: %s, want %s", got, want)
	}
	if got := m.UserRooms("U"); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("U's rooms: %v", got)
	}
	if got := m.UserRooms("nobody"); len(got) != 0 {
		t.Fatalf("nobody's rooms: %v", got)
	}

	// U leaves ams-1's room a: still in a through ams-2 and syd-1.
	m.set("ams-1", member{"a", "U"}, "")
	if got := roomsOf(m, "", 100); got != want {
		t.Fatalf("after one of U's instances left: %s, want %s", got, want)
	}
	m.set("ams-2", member{"a", "U"}, "")
	if got := roomsOf(m, "a", 100); got != "[{a 2 map[ams:1 syd:1]}]" {
		t.Fatalf("after U left ams: %s", got)
	}
	// An answer is a copy: changing it changes nothing kept.
	m.Occupied("a", 1)[0].Regions["ams"] = 99
	if got := roomsOf(m, "a", 1); got != "[{a 2 map[ams:1 syd:1]}]" {
		t.Fatalf("after changing an answer: %s", got)
	}
}

func TestMembersPrefixAndLimit(t *testing.T) {
	m := newMembers()
	for i, room := range []string{"shop/1", "shop/2", "shop/3", "blog/1"} {
		for u := range i + 1 {
			m.set("i", member{room, UserID(fmt.Sprint("U", u))}, "ams")
		}
	}
	if got := roomsOf(m, "shop/", 2); got != "[{shop/3 3 map[ams:3]} {shop/2 2 map[ams:2]}]" {
		t.Fatalf("shop/, 2: %s", got)
	}
	if got := roomsOf(m, "", 1); got != "[{blog/1 4 map[ams:4]}]" {
		t.Fatalf("top 1: %s", got)
	}
	if got := m.Occupied("nothing", 10); got == nil || len(got) != 0 {
		t.Fatalf("no match: %#v, want an empty list", got)
	}
}

// An instance gone takes its memberships with it, and only its; a
// re-read that finds what was known changes nothing.
func TestMembersInstanceGoneAndReplace(t *testing.T) {
	m := newMembers()
	var events []string
	m.Observe(func(e MemberEvent) {
		events = append(events, fmt.Sprint(e.Type, " ", e.Room, " ", e.User, " ", e.Region))
	})
	m.set("ams-1", member{"a", "U"}, "ams")
	m.set("iad-1", member{"a", "U"}, "iad")
	m.set("iad-1", member{"a", "V"}, "iad")
	m.set("iad-1", member{"b", "V"}, "iad")
	want := []string{"room.occupied a U ams", "member.added a U ams", "member.added a V iad",
		"room.occupied b V iad", "member.added b V iad"}
	if !reflect.DeepEqual(events, want) {
		t.Fatalf("events: %q, want %q", events, want)
	}
	events = nil
	m.replace("iad-1", m.of("iad-1"))
	if len(events) != 0 {
		t.Fatalf("re-reading what was known: %q", events)
	}
	m.replace("iad-1", nil)
	want = []string{"member.removed a V iad", "member.removed b V iad", "room.vacated b V iad"}
	if !reflect.DeepEqual(slices.Sorted(slices.Values(events)), want) {
		t.Fatalf("events: %q, want %q", events, want)
	}
	if got := roomsOf(m, "", 10); got != "[{a 1 map[ams:1]}]" {
		t.Fatalf("after iad-1 went: %s", got)
	}
	if got := m.UserRooms("V"); len(got) != 0 {
		t.Fatalf("V's rooms after iad-1 went: %v", got)
	}
	if got := m.instances(); !reflect.DeepEqual(got, []string{"ams-1"}) {
		t.Fatalf("instances: %v", got)
	}
}

// The memory store feeds the index from its tabs: a user's membership of
// a room lasts from their first tab there to their last.
func TestMemoryOccupancy(t *testing.T) {
	m := NewMemory("ams")
	ctx := t.Context()
	tab := func(id string, user UserID) Tab { return Tab{ID: id, User: user, Region: "ams"} }
	_ = m.Join(ctx, "a", tab("1", "U"))
	_ = m.Join(ctx, "a", tab("2", "U"))
	_ = m.Join(ctx, "a", tab("2", "U")) // twice: a no-op
	_ = m.Join(ctx, "a", tab("3", "V"))
	_ = m.Join(ctx, "b", tab("4", "U"))
	if got := roomsOf(m.Members, "", 10); got != "[{a 2 map[ams:2]} {b 1 map[ams:1]}]" {
		t.Fatalf("rooms: %s", got)
	}
	_ = m.Leave(ctx, "a", "1")
	if got := m.UserRooms("U"); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("U's rooms with one tab left in a: %v", got)
	}
	_ = m.Leave(ctx, "a", "2")
	if got := m.UserRooms("U"); !reflect.DeepEqual(got, []string{"b"}) {
		t.Fatalf("U's rooms after their last tab in a closed: %v", got)
	}
	_ = m.Close()
	if got := m.Occupied("", 10); len(got) != 0 {
		t.Fatalf("after Close: %v", got)
	}
}

// What other instances held when this one started is not a change: events
// from its first load are marked Initial; its own memberships, and all
// after the load, are transitions.
func TestMembersInitialLoad(t *testing.T) {
	m := newMembers()
	m.self = "me"
	var got []string
	m.Observe(func(e MemberEvent) { got = append(got, fmt.Sprintf("%s %s %v", e.Type, e.Inst, e.Initial)) })
	m.replace("other", map[member]string{{"a", "U"}: "ams"})
	m.set("me", member{"b", "V"}, "ams")
	m.prime()
	m.set("other", member{"a", "W"}, "ams")
	want := []string{"room.occupied other true", "member.added other true",
		"room.occupied me false", "member.added me false", "member.added other false"}
	if !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
}

// liveHeap is the heap's live bytes after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// A crowd that leaves takes its memory with it: every map that held it is
// let go once empty, whatever its peak.
func TestMembersGiveBackACrowdsMemory(t *testing.T) {
	m := NewMemory("ams")
	defer m.Close()
	ctx := context.Background()
	tab := func(i int) (string, Tab) {
		return fmt.Sprintf("room-%d", i%10_000), Tab{ID: fmt.Sprintf("tab-%d", i), User: UserID(fmt.Sprintf("user-%d", i)), Region: "ams"}
	}
	base := liveHeap()
	for i := range 20_000 {
		room, t := tab(i)
		_ = m.Join(ctx, room, t)
	}
	full := liveHeap()
	for i := range 20_000 {
		room, t := tab(i)
		_ = m.Leave(ctx, room, t.ID)
	}
	after := liveHeap()
	runtime.KeepAlive(m)
	t.Logf("live heap: %d KiB, %d KiB with 20,000 tabs in 10,000 rooms, %d KiB after they left", base>>10, full>>10, after>>10)
	if full < base+4<<20 {
		t.Fatalf("20,000 tabs took only %d KiB: the test shows nothing", (full-base)>>10)
	}
	if after > base+128<<10 {
		t.Errorf("%d KiB kept after everyone left", (after-base)>>10)
	}
	if n := len(m.Occupied("", 10)); n != 0 {
		t.Errorf("%d rooms still occupied", n)
	}
}
