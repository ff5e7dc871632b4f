package presence

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"globalpresence/internal/redisnode"
)

// The store on a KeyDB multi-master mesh (../shared/keydb/keydb-server, or
// $KEYDB_SERVER): the same suite as on Redis, and a node restarted empty.

// keydbMesh starts n KeyDB nodes, each a replica of every other, and waits
// until every link is up.
func keydbMesh(t *testing.T, n int) []*redisnode.Node {
	t.Helper()
	nodes := make([]*redisnode.Node, n)
	for i := range nodes {
		nodes[i] = redisnode.MustStart(t, redisnode.Options{KeyDB: true})
	}
	for _, node := range nodes {
		mesh(t, node, nodes)
	}
	waitSynced(t, nodes...)
	return nodes
}

// mesh makes node a replica of every other node.
func mesh(t *testing.T, node *redisnode.Node, nodes []*redisnode.Node) {
	t.Helper()
	for _, peer := range nodes {
		if peer == node {
			continue
		}
		host, port, _ := net.SplitHostPort(peer.Addr())
		if _, err := node.Do("REPLICAOF", host, port); err != nil {
			t.Fatal(err)
		}
	}
}

func waitSynced(t *testing.T, nodes ...*redisnode.Node) {
	t.Helper()
	eventually(t, 15*time.Second, "every KeyDB node in sync", func() bool {
		for _, n := range nodes {
			info, err := n.Do("INFO", "replication")
			if err != nil {
				return false
			}
			if st := judgeNode(infoFields(info), nodeState{}); !st.ok || infoFields(info)["role"] != "active-replica" {
				return false
			}
		}
		return true
	})
}

func TestKeyDBStore(t *testing.T) {
	nodes := keydbMesh(t, 3)
	i := 0
	storeSuite(t, func(t *testing.T, region string) Store {
		i++
		return openRedis(t, RedisConfig{URL: nodes[i%3].URL(), Region: region})
	})
}

// A KeyDB node restarted empty: its region's instance is not ready and
// refuses writes until the node is back in its mesh and synced (a write to
// the empty node would make its peers keep its emptier keys); then every
// flip and message is there, on every node, and the instance is ready.
func TestKeyDBNodeRestartedEmpty(t *testing.T) {
	nodes := keydbMesh(t, 3)
	ctx := context.Background()
	ams := openRedis(t, RedisConfig{URL: nodes[0].URL(), Region: "ams"})
	syd := openRedis(t, RedisConfig{URL: nodes[1].URL(), Region: "syd"})
	for _, s := range []*Redis{ams, syd} {
		_, _ = s.Snapshot(ctx, "home", AllParts)
	}
	for i := range 23 {
		if _, err := ams.Switch(ctx, "home", Switch{By: "U"}); err != nil {
			t.Fatal(err)
		}
		if i < 10 {
			if _, err := ams.Say(ctx, "home", Post{Text: fmt.Sprint(i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitSnapshot(t, syd, "home", func(s Snapshot) bool { return s.Light.Flips == 23 && len(s.Messages) == 10 })

	if err := nodes[0].Crash(false); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "ams not ready with its node restarted empty", func() bool { return ams.Ready(ctx) != nil })
	start := time.Now()
	if _, err := ams.Switch(ctx, "home", Switch{By: "U"}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a flip to the restarted, unsynced node: %v", err)
	}
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Logf("the refusal took %v", took) // a figure, not a test: the machine is shared
	}
	snap, _ := ams.Snapshot(ctx, "home", AllParts)
	if snap.Status.Live || snap.Light.Flips != 23 || len(snap.Messages) != 10 {
		t.Fatalf("while its node is empty, ams must serve the last state read, marked not live: %+v", snap)
	}

	mesh(t, nodes[0], nodes)
	waitSynced(t, nodes...)
	waitReady(t, ams)
	if _, err := ams.Switch(ctx, "home", Switch{By: "U"}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Redis{ams, syd} {
		waitSnapshot(t, s, "home", func(s Snapshot) bool { return s.Light.Flips == 24 && len(s.Messages) == 10 })
	}
	fresh := openRedis(t, RedisConfig{URL: nodes[2].URL(), Region: "iad"})
	waitSnapshot(t, fresh, "home", func(s Snapshot) bool { return s.Light.Flips == 24 && len(s.Messages) == 10 })
	for _, n := range nodes {
		if got, _ := n.Do("LLEN", feedKey("home", "ams")); got != "10" {
			t.Fatalf("node %s holds %s of ams's 10 messages", n.Addr(), got)
		}
	}
}

// INFO of a KeyDB active replica: in sync only with every peer link up and
// no sync in progress; a node seen in a mesh that comes back standalone is
// out of it.
func TestJudgeKeyDBNode(t *testing.T) {
	up := map[string]string{"role": "active-replica", "run_id": "a", "master_global_link_status": "up",
		"master_0_link_status": "up", "master_1_link_status": "up", "master_sync_in_progress": "0"}
	if st := judgeNode(up, nodeState{}); !st.ok || !st.active {
		t.Fatalf("a synced active replica: %+v", st)
	}
	down := map[string]string{"role": "active-replica", "master_global_link_status": "up",
		"master_0_link_status": "up", "master_1_link_status": "down", "master_sync_in_progress": "0"}
	if st := judgeNode(down, nodeState{}); st.ok {
		t.Fatal("a peer link down was taken as in sync")
	}
	silent := map[string]string{"role": "active-replica", "master_link_status": "up", "master_last_io_seconds_ago": "0",
		"master_1_link_status": "up", "master_1_last_io_seconds_ago": "3", "master_sync_in_progress": "0"}
	if st := judgeNode(silent, nodeState{}); st.ok {
		t.Fatal("a peer link silent for 3 s was taken as in sync")
	}
	syncing := map[string]string{"role": "active-replica", "master_link_status": "up", "master_sync_in_progress": "1"}
	if st := judgeNode(syncing, nodeState{}); st.ok {
		t.Fatal("a sync in progress was taken as in sync")
	}
	alone := map[string]string{"role": "master", "run_id": "b"}
	if st := judgeNode(alone, nodeState{active: true, runID: "a"}); st.ok {
		t.Fatal("a KeyDB node back without its mesh was taken as in sync")
	}
	if st := judgeNode(alone, nodeState{}); !st.ok {
		t.Fatal("a standalone primary is in sync")
	}
}

// A black-holed link between two KeyDB nodes (no FIN: both say the link is
// up): both instances go not ready within seconds, as nothing, not even
// the peer's pings, comes through. With a TTL shorter than that, one node
// sees the other region's instance expire first, and its tabs are reaped
// there; once the link heals the reaping reaches the live instance's own
// node. The instance notices at its next beat and writes its tabs again, so
// presence comes back everywhere.
func TestKeyDBBlackHoledPeerLink(t *testing.T) {
	a := redisnode.MustStart(t, redisnode.Options{KeyDB: true})
	b := redisnode.MustStart(t, redisnode.Options{KeyDB: true})
	ab, ba := linkTo(t, b), linkTo(t, a) // a replicates b through ab, b replicates a through ba
	for _, m := range []struct {
		node *redisnode.Node
		via  string
	}{{a, ab.Addr()}, {b, ba.Addr()}} {
		host, port, _ := net.SplitHostPort(m.via)
		if _, err := m.node.Do("REPLICAOF", host, port); err != nil {
			t.Fatal(err)
		}
	}
	waitSynced(t, a, b)
	ctx := context.Background()
	ams := openRedis(t, RedisConfig{URL: a.URL(), Region: "ams", TTL: time.Second})
	syd := openRedis(t, RedisConfig{URL: b.URL(), Region: "syd", TTL: time.Second})
	_, _ = ams.Snapshot(ctx, "home", AllParts)
	if err := syd.Join(ctx, "home", Tab{ID: "t", User: "U", Region: "syd", Since: time.Now()}); err != nil {
		t.Fatal(err)
	}
	waitTabs(t, ams, "home", 1, 5*time.Second)

	ab.Stall()
	ba.Stall()
	waitTabs(t, ams, "home", 0, 5*time.Second) // syd's key expired on ams's node
	// Both links still say "up", but nothing comes through: not ready.
	for _, st := range []*Redis{ams, syd} {
		eventually(t, 5*time.Second, "not ready behind a black-holed peer link", func() bool { return st.Ready(ctx) != nil })
	}
	ab.Restore()
	ba.Restore()
	waitReady(t, ams)
	waitReady(t, syd)
	waitTabs(t, ams, "home", 1, 5*time.Second)
	eventually(t, 5*time.Second, "syd's tabs back on syd's own node", func() bool {
		n, _ := b.Do("HLEN", tabsKey("home", syd.inst))
		return n == "2"
	})
}
