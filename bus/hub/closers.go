package hub

import "sync"

// maxClosers bounds the onClose calls running at once. A mass close (a
// proxy restarting, a network cut, everyone leaving at once) would
// otherwise start a goroutine per stream, each waiting on the store: tens
// of thousands at once, and the runtime keeps a descriptor for every
// goroutine ever alive at once for the rest of the process's life.
const maxClosers = 64

// closers runs calls in order on at most maxClosers goroutines, started as
// calls queue up and ended when the queue is empty.
type closers struct {
	mu      sync.Mutex
	queue   []func()
	head    int // the next call to run
	running int
}

func (cl *closers) run(fn func()) {
	cl.mu.Lock()
	cl.queue = append(cl.queue, fn)
	start := cl.running < maxClosers
	if start {
		cl.running++
	}
	cl.mu.Unlock()
	if start {
		go cl.drain()
	}
}

func (cl *closers) drain() {
	for {
		cl.mu.Lock()
		if cl.head == len(cl.queue) {
			cl.queue, cl.head = nil, 0 // let a burst's array go
			cl.running--
			cl.mu.Unlock()
			return
		}
		fn := cl.queue[cl.head]
		cl.queue[cl.head] = nil
		if cl.head++; cl.head > 1024 && 2*cl.head > len(cl.queue) {
			// Calls keep coming: move the waiting ones down rather than
			// grow the array for ever.
			n := copy(cl.queue, cl.queue[cl.head:])
			clear(cl.queue[n:])
			cl.queue, cl.head = cl.queue[:n], 0
		}
		cl.mu.Unlock()
		fn()
	}
}
