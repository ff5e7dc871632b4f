package shrink

import (
	"maps"
	"runtime"
	"testing"
)

// heapAfter fills a map with n entries, empties it with del, and returns
// the live heap while the map is still referenced.
func heapAfter(n int, del func(*map[int]int, int)) uint64 {
	m := make(map[int]int)
	for i := range n {
		m[i] = i
	}
	for i := range n {
		del(&m, i)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	runtime.KeepAlive(m)
	return ms.HeapAlloc
}

func TestDeleteGivesBackAnEmptiedMap(t *testing.T) {
	const n = 200_000 // about 4 MiB of tables
	base := heapAfter(0, Delete[map[int]int])
	kept := heapAfter(n, func(m *map[int]int, k int) { delete(*m, k) })
	shrunk := heapAfter(n, Delete[map[int]int])
	t.Logf("live heap: %d KiB before, %d KiB after plain delete, %d KiB after shrink.Delete", base>>10, kept>>10, shrunk>>10)
	if kept < base+2<<20 {
		t.Fatalf("a plain emptied map kept only %d KiB: the test no longer shows anything", (kept-base)>>10)
	}
	if shrunk > base+256<<10 {
		t.Errorf("an emptied map still holds %d KiB", (shrunk-base)>>10)
	}
}

func TestDeleteKeepsOthers(t *testing.T) {
	m := map[string]int{"a": 1, "b": 2}
	Delete(&m, "a")
	if len(m) != 1 || m["b"] != 2 {
		t.Fatalf("got %v", m)
	}
	Delete(&m, "b")
	m["c"] = 3 // the new map takes writes
	if len(m) != 1 {
		t.Fatalf("got %v", m)
	}
}

func TestDeleteFuncGivesBackAnEmptiedMap(t *testing.T) {
	const n = 200_000
	all := func(int, int) bool { return true }
	base := heapAfter(0, Delete[map[int]int])
	kept := heapAfter(n, func(m *map[int]int, k int) {
		if k == n-1 {
			maps.DeleteFunc(*m, all)
		}
	})
	shrunk := heapAfter(n, func(m *map[int]int, k int) {
		if k == n-1 {
			DeleteFunc(m, all)
		}
	})
	if kept < base+2<<20 {
		t.Fatalf("a plain emptied map kept only %d KiB: the test no longer shows anything", (kept-base)>>10)
	}
	if shrunk > base+256<<10 {
		t.Errorf("an emptied map still holds %d KiB", (shrunk-base)>>10)
	}
	m := map[string]int{"a": 1, "b": 2}
	DeleteFunc(&m, func(k string, _ int) bool { return k == "a" })
	if len(m) != 1 || m["b"] != 2 {
		t.Fatalf("got %v", m)
	}
}
