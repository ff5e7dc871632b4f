package cluster

import (
	"bytes"
	"os"
	"sync"
	"testing"

	"globalpresence/internal/redisnode"
)

var testBinary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// TestBinary builds the app once per test process for tests that run it as
// real processes, and fails or skips them like redisnode.Require when
// redis-server is missing. Call RemoveTestBinary from TestMain.
func TestBinary(tb testing.TB) string {
	tb.Helper()
	redisnode.Require(tb)
	testBinary.once.Do(func() {
		if testBinary.dir, testBinary.err = os.MkdirTemp("", "gp-test-bin-"); testBinary.err == nil {
			testBinary.path, testBinary.err = BuildApp(testBinary.dir)
		}
	})
	if testBinary.err != nil {
		tb.Fatalf("building the app: %v", testBinary.err)
	}
	return testBinary.path
}

// RemoveTestBinary deletes what TestBinary built.
func RemoveTestBinary() {
	if testBinary.dir != "" {
		os.RemoveAll(testBinary.dir)
	}
}

// LogBuffer is a bytes.Buffer that a test reads while a cluster's apps, a
// store's goroutines or a run write to it.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
