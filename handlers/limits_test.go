package handlers

import (
	"fmt"
	"testing"
	"time"
)

// Buckets are forgotten once full again, without another request to
// trigger it: a server left idle after a burst of posts keeps none.
func TestLimiterForgetsIdleBuckets(t *testing.T) {
	l := newLimiter(100, 10) // full again 0.1 s after the last use; kept 1.1 s
	for i := range 1000 {
		if wait := l.allow(time.Now(), fmt.Sprint("user-", i), "address"); wait > 0 && i < 10 {
			t.Fatalf("post %d refused", i)
		}
	}
	count := func() int {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.buckets)
	}
	if n := count(); n < 10 {
		t.Fatalf("%d buckets kept after the burst", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for count() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d buckets still kept 10 s after the last post", count())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// And the limiter still limits.
	for range 10 {
		l.allow(time.Now(), "again")
	}
	if wait := l.allow(time.Now(), "again"); wait <= 0 {
		t.Fatal("an 11th post at once was allowed with a burst of 10")
	}
}
