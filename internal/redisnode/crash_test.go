package redisnode_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"globalpresence/internal/redisnode"
)

func TestCrashKeepsOrDropsData(t *testing.T) {
	t.Parallel()
	n := redisnode.MustStart(t, redisnode.Options{})
	set(t, n, "k", "v")
	pid := n.PID()
	if err := n.Crash(true); err != nil {
		t.Fatal(err)
	}
	if n.PID() == pid {
		t.Fatal("same pid after Crash")
	}
	// Redis writes the AOF before it answers, so kill -9 loses nothing
	// acknowledged.
	if got := get(t, n, "k"); got != "v" {
		t.Fatalf("after Crash(keepData) GET k = %q, want v", got)
	}
	if err := n.Crash(false); err != nil {
		t.Fatal(err)
	}
	if got := get(t, n, "k"); got != "" {
		t.Fatalf("after Crash(drop data) GET k = %q, want nothing", got)
	}
}

func replicaOf(t *testing.T, n *redisnode.Node, peer string) {
	t.Helper()
	host, port, _ := net.SplitHostPort(peer)
	if _, err := n.Do("REPLICAOF", host, port); err != nil {
		t.Fatalf("REPLICAOF on %s: %v", n.Addr(), err)
	}
}

func TestKeyDBMesh(t *testing.T) {
	t.Parallel()
	a := redisnode.MustStart(t, redisnode.Options{KeyDB: true})
	b := redisnode.MustStart(t, redisnode.Options{KeyDB: true})
	replicaOf(t, a, b.Addr())
	replicaOf(t, b, a.Addr())
	if info, _ := a.Do("INFO", "replication"); !strings.Contains(info, "role:active-replica") {
		t.Fatalf("INFO replication:\n%s", info)
	}
	set(t, a, "from", "a")
	set(t, b, "from-b", "b")
	waitFor(t, 5*time.Second, "a's write on b", func() bool { return get(t, b, "from") == "a" })
	waitFor(t, 5*time.Second, "b's write on a", func() bool { return get(t, a, "from-b") == "b" })

	// Restarted empty and re-meshed, b gets everything back from a.
	if err := b.Crash(false); err != nil {
		t.Fatal(err)
	}
	replicaOf(t, b, a.Addr())
	waitFor(t, 10*time.Second, "a's data on b after its restart", func() bool { return get(t, b, "from") == "a" })
}
