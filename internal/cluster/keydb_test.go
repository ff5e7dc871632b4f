package cluster_test

import (
	"context"
	"testing"
	"time"

	"globalpresence/internal/cluster"
	"globalpresence/internal/redisnode"
)

func TestKeyDBTopology(t *testing.T) {
	redisnode.RequireKeyDB(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := startCluster(t, cluster.Config{
		Topology: cluster.TopologyKeyDB,
		Regions:  []string{"ams", "iad", "syd"},
		AppArgs:  []string{"-coalesce", "50ms"},
	})
	if c.Primary != nil || c.Topology() != cluster.TopologyKeyDB {
		t.Fatalf("keydb cluster has a primary (%v) or topology %q", c.Primary, c.Topology())
	}
	// Six links: every node replicates every other through its own proxy.
	if got := len(c.Links()); got != 6 {
		t.Fatalf("%d links, want 6", got)
	}

	// A write in any region reaches all others through the mesh.
	for i, from := range c.Regions {
		on := i%2 == 0
		setLight(t, from.Apps[0], on)
		for _, to := range c.Regions {
			d := waitLight(t, to.Apps[0], on, 5*time.Second)
			t.Logf("%s saw %s's set (on=%v) after %v", to.Name, from.Name, on, d)
		}
	}

	// A node killed and restarted empty is meshed again and gets the state
	// back from its peers.
	var syd cluster.StoreNode
	for _, n := range c.StoreNodes() {
		if n.Region == "syd" {
			syd = n
		}
	}
	if err := c.CrashNode(ctx, syd, false); err != nil {
		t.Fatal(err)
	}
	if got, _ := syd.Node.Do("DBSIZE"); got == "0" {
		t.Fatal("syd's node is empty after re-meshing")
	}
	// The app takes writes again once it has seen its node in sync.
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	setLight(t, c.Region("syd").Apps[0], false)
	waitLight(t, c.Region("ams").Apps[0], false, 10*time.Second)
}
