package redisnode

import (
	"os"
	"testing"
)

// Require skips a test that needs redis-server when it is missing locally,
// but fails it under CI (CI set), so CI can never pass by skipping.
func Require(tb testing.TB) {
	tb.Helper()
	if _, err := RedisServerPath(); err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("CI: %v", err)
		}
		tb.Skipf("skipping: %v", err)
	}
}

// RequireKeyDB is Require for keydb-server: a missing binary skips the
// test locally, saying how to get one, and fails it under CI.
func RequireKeyDB(tb testing.TB) {
	tb.Helper()
	if _, err := KeyDBServerPath(); err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("CI: %v", err)
		}
		tb.Skipf("skipping: %v", err)
	}
}

// MustStart starts a node for a test and stops it in tb.Cleanup (see
// Require for a missing redis-server). An empty opts.Dir becomes
// tb.TempDir().
func MustStart(tb testing.TB, opts Options) *Node {
	tb.Helper()
	if opts.KeyDB {
		RequireKeyDB(tb)
	} else {
		Require(tb)
	}
	if opts.Dir == "" {
		opts.Dir = tb.TempDir()
	}
	n, err := Start(opts)
	if err != nil {
		tb.Fatal(err)
	}
	// Registered after TempDir's removal, so it runs before it.
	tb.Cleanup(func() {
		if err := n.Stop(); err != nil {
			tb.Errorf("stop redis %s: %v", n.Addr(), err)
		}
	})
	return n
}
