package redisnode_test

import (
	"bufio"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"globalpresence/internal/netproxy"
	"globalpresence/internal/redisnode"
)

// waitFor polls cond until it holds or timeout passes, and returns how
// long it took.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func linkStatus(n *redisnode.Node) string {
	info, err := n.Do("INFO", "replication")
	if err != nil {
		return "error: " + err.Error()
	}
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "master_link_status:"); ok {
			return v
		}
	}
	return "missing"
}

func get(t *testing.T, n *redisnode.Node, key string) string {
	t.Helper()
	v, err := n.Do("GET", key)
	if err != nil {
		t.Fatalf("GET %s on %s: %v", key, n.Addr(), err)
	}
	return v
}

func set(t *testing.T, n *redisnode.Node, key, value string) {
	t.Helper()
	if reply, err := n.Do("SET", key, value); err != nil || reply != "OK" {
		t.Fatalf("SET %s on %s: %q, %v", key, n.Addr(), reply, err)
	}
}

func TestPrimaryWithReplicas(t *testing.T) {
	t.Parallel()
	primary := redisnode.MustStart(t, redisnode.Options{
		ExtraConfig: []string{"notify-keyspace-events Kgx"},
	})
	var replicas []*redisnode.Node
	for range 2 {
		replicas = append(replicas, redisnode.MustStart(t, redisnode.Options{ReplicaOf: primary.Addr()}))
	}

	cfg, err := primary.Do("CONFIG", "GET", "notify-keyspace-events")
	if err != nil {
		t.Fatal(err)
	}
	// Redis reorders the flags, so compare them as a set.
	name, flags, _ := strings.Cut(cfg, "\n")
	if name != "notify-keyspace-events" || len(flags) != 3 || !strings.ContainsRune(flags, 'K') ||
		!strings.ContainsRune(flags, 'g') || !strings.ContainsRune(flags, 'x') {
		t.Fatalf("CONFIG GET notify-keyspace-events = %q", cfg)
	}

	set(t, primary, "greeting", "hello")
	for _, r := range replicas {
		d := waitFor(t, 5*time.Second, "key on replica "+r.Addr(), func() bool { return get(t, r, "greeting") == "hello" })
		t.Logf("replica %s has the key after %v", r.Addr(), d)
	}

	oldPID := primary.PID()
	start := time.Now()
	if err := primary.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Logf("primary restart took %v", time.Since(start))
	if primary.PID() == oldPID || primary.PID() == 0 {
		t.Fatalf("PID %d after restart, was %d", primary.PID(), oldPID)
	}
	if got := get(t, primary, "greeting"); got != "hello" {
		t.Fatalf("after restart GET greeting = %q, want hello (AOF)", got)
	}
	for _, r := range replicas {
		d := waitFor(t, 10*time.Second, "replica "+r.Addr()+" link up after primary restart",
			func() bool { return linkStatus(r) == "up" })
		t.Logf("replica %s link up again %v after the restart returned", r.Addr(), d)
	}
	set(t, primary, "after", "restart")
	for _, r := range replicas {
		waitFor(t, 5*time.Second, "new key on replica "+r.Addr(), func() bool { return get(t, r, "after") == "restart" })
	}
}

func TestPassword(t *testing.T) {
	t.Parallel()
	const pw = "s3cret/pw"
	primary := redisnode.MustStart(t, redisnode.Options{Password: pw})
	if want := "redis://:s3cret%2Fpw@" + primary.Addr() + "/0"; primary.URL() != want {
		t.Fatalf("URL = %q, want %q", primary.URL(), want)
	}
	if got, err := primary.Do("PING"); err != nil || got != "PONG" {
		t.Fatalf("PING = %q, %v", got, err)
	}

	c, err := net.DialTimeout("tcp", primary.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(line, "-NOAUTH") {
		t.Fatalf("unauthenticated PING got %q, want -NOAUTH", line)
	}

	// masterauth lets a replica with the same password sync.
	replica := redisnode.MustStart(t, redisnode.Options{ReplicaOf: primary.Addr(), Password: pw})
	set(t, primary, "k", "v")
	waitFor(t, 5*time.Second, "key on authenticated replica", func() bool { return get(t, replica, "k") == "v" })
}

func TestDoReplies(t *testing.T) {
	t.Parallel()
	n := redisnode.MustStart(t, redisnode.Options{})
	if got, _ := n.Do("GET", "missing"); got != "" {
		t.Fatalf("GET missing = %q, want empty", got)
	}
	if got, _ := n.Do("RPUSH", "list", "a", "b"); got != "2" {
		t.Fatalf("RPUSH = %q, want 2", got)
	}
	if got, _ := n.Do("LRANGE", "list", "0", "-1"); got != "a\nb" {
		t.Fatalf("LRANGE = %q", got)
	}
	_, err := n.Do("NOSUCHCOMMAND")
	var re redisnode.RedisError
	if !errors.As(err, &re) || !strings.HasPrefix(string(re), "ERR") {
		t.Fatalf("unknown command error = %v", err)
	}
}

func TestKill(t *testing.T) {
	t.Parallel()
	n := redisnode.MustStart(t, redisnode.Options{})
	pid := n.PID()
	if pid == 0 {
		t.Fatal("no PID")
	}
	if err := n.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("pid %d still there after Kill (kill -0: %v)", pid, err)
	}
	if n.PID() != 0 {
		t.Fatalf("PID() = %d after Kill", n.PID())
	}
	if err := n.Stop(); err != nil {
		t.Fatalf("Stop after Kill: %v", err)
	}
	// A killed node comes back from its AOF like a stopped one.
	if err := n.Restart(); err != nil {
		t.Fatal(err)
	}
}

func TestStartFailureShowsLog(t *testing.T) {
	t.Parallel()
	if _, err := redisnode.RedisServerPath(); err != nil {
		t.Skip(err)
	}
	if _, err := redisnode.Start(redisnode.Options{}); err == nil {
		t.Fatal("Start without Dir succeeded")
	}
	dir := t.TempDir()
	n, err := redisnode.Start(redisnode.Options{Dir: dir, ExtraConfig: []string{"no-such-directive yes"}})
	if err == nil {
		n.Stop()
		t.Fatal("Start with a bad directive succeeded")
	}
	if !strings.Contains(err.Error(), "no-such-directive") {
		t.Fatalf("error lacks the log tail: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "redis.conf")); err != nil {
		t.Fatalf("config not written: %v", err)
	}
}

func TestReplicaThroughCutLink(t *testing.T) {
	t.Parallel()
	primary := redisnode.MustStart(t, redisnode.Options{})
	proxy, err := netproxy.Start("127.0.0.1:0", primary.Addr())
	if err != nil {
		t.Fatal(err)
	}
	// Registered before the replica's cleanup, so it runs after it.
	t.Cleanup(func() { proxy.Close() })
	replica := redisnode.MustStart(t, redisnode.Options{ReplicaOf: proxy.Addr()})

	set(t, primary, "before", "cut")
	waitFor(t, 5*time.Second, "key through proxy", func() bool { return get(t, replica, "before") == "cut" })

	proxy.Cut()
	d := waitFor(t, 10*time.Second, "link down after Cut", func() bool { return linkStatus(replica) == "down" })
	t.Logf("replica saw the cut after %v", d)

	set(t, primary, "during", "cut")
	time.Sleep(300 * time.Millisecond)
	if got := get(t, replica, "during"); got != "" {
		t.Fatalf("replica got %q through a cut link", got)
	}
	// Stale reads still work while the link is down.
	if got := get(t, replica, "before"); got != "cut" {
		t.Fatalf("stale read = %q", got)
	}

	proxy.Restore()
	d = waitFor(t, 10*time.Second, "link up after Restore", func() bool { return linkStatus(replica) == "up" })
	t.Logf("link up %v after Restore", d)
	waitFor(t, 5*time.Second, "key set during the cut", func() bool { return get(t, replica, "during") == "cut" })
	if stats, err := primary.Do("INFO", "stats"); err == nil {
		for _, l := range strings.Split(stats, "\n") {
			if strings.HasPrefix(l, "sync_") {
				t.Logf("primary %s", strings.TrimSpace(l))
			}
		}
	}

	// Latency on the link delays replication but does not stop it.
	proxy.SetLatency(100 * time.Millisecond)
	start := time.Now()
	set(t, primary, "slow", "link")
	d = waitFor(t, 5*time.Second, "key over slow link", func() bool { return get(t, replica, "slow") == "link" })
	if d < 80*time.Millisecond {
		t.Fatalf("key arrived after %v over a 100ms link", time.Since(start))
	}
	t.Logf("key arrived %v after SET over a 100ms link", d)
}
