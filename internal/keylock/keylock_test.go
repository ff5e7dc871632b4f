package keylock

import (
	"fmt"
	"testing"
)

// A key always gets the same mutex, and keys spread over many.
func TestForIsStableAndSpreads(t *testing.T) {
	var l Locks
	used := map[any]bool{}
	for i := range 4096 {
		key := fmt.Sprintf("lg/r%d", i)
		mu := l.For(key)
		if l.For(key) != mu {
			t.Fatalf("%s: two mutexes", key)
		}
		used[mu] = true
	}
	if len(used) < len(l)*9/10 {
		t.Fatalf("4,096 keys use %d of %d mutexes", len(used), len(l))
	}
}
