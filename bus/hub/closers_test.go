package hub

import (
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// Every call queued runs once, also while the queue is moved down under
// a steady stream of calls, and nothing is left behind.
func TestClosersRunEveryCallOnce(t *testing.T) {
	var cl closers
	const n = 20_000
	var mu sync.Mutex
	ran := make([]int, n)
	var wg sync.WaitGroup
	wg.Add(n)
	for i := range n {
		cl.run(func() {
			mu.Lock()
			ran[i]++
			mu.Unlock()
			wg.Done()
		})
	}
	all := make(chan struct{})
	go func() { wg.Wait(); close(all) }()
	select {
	case <-all:
	case <-time.After(10 * time.Second):
		mu.Lock()
		missing := slices.Index(ran, 0)
		mu.Unlock()
		t.Fatalf("not every call ran within 10 s; the first missing: %d", missing)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, k := range ran {
		if k != 1 {
			t.Fatalf("call %d ran %d times", i, k)
		}
	}
	for {
		cl.mu.Lock()
		running, queued := cl.running, cap(cl.queue)
		cl.mu.Unlock()
		if running == 0 {
			if queued != 0 {
				t.Fatalf("an idle queue keeps an array of %d", queued)
			}
			return
		}
		runtime.Gosched() // the last drainers are returning
	}
}
