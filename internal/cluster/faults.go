package cluster

import (
	"context"
	"fmt"

	"globalpresence/internal/netproxy"
	"globalpresence/internal/redisnode"
)

// Link is one proxied link of the cluster, which a fault can delay, cut or
// stall.
type Link struct {
	Name        string // e.g. "syd replication", "syd writes", "ams→syd" (syd replicates ams)
	Proxy       *netproxy.Proxy
	CrossRegion bool // between regions: SetLatency delays it
}

// Links lists every proxied link, region by region; none when Direct.
func (c *Cluster) Links() []Link {
	var links []Link
	for i, r := range c.Regions {
		if r.ReplLink != nil {
			links = append(links, Link{r.Name + " replication", r.ReplLink, i > 0})
		}
		if r.WriteLink != nil {
			links = append(links, Link{r.Name + " writes", r.WriteLink, i > 0})
		}
		for _, peer := range c.Regions {
			if l := r.PeerLinks[peer.Name]; l != nil {
				links = append(links, Link{peer.Name + "→" + r.Name, l, true})
			}
		}
	}
	return links
}

// StoreNode is one store process of the cluster.
type StoreNode struct {
	Name   string // "primary", "syd replica", "syd keydb"
	Region string
	Node   *redisnode.Node
}

// StoreNodes lists the primary (Redis topology) and every region's node.
func (c *Cluster) StoreNodes() []StoreNode {
	var nodes []StoreNode
	if c.Primary != nil {
		nodes = append(nodes, StoreNode{"primary", c.Regions[0].Name, c.Primary})
	}
	for _, r := range c.Regions {
		if r.Replica != nil {
			nodes = append(nodes, StoreNode{r.Name + " replica", r.Name, r.Replica})
		}
		if r.Node != nil {
			nodes = append(nodes, StoreNode{r.Name + " keydb", r.Name, r.Node})
		}
	}
	return nodes
}

// CrashNode kills n with SIGKILL and starts it again, from its AOF with
// keepData, else empty. A Redis replica reconnects to the primary by its
// config and replicas reconnect to a restarted primary by themselves; a
// KeyDB node forgets its peers, so it is meshed again and CrashNode waits
// (bounded by ctx and syncTimeout) until it has synced from them.
func (c *Cluster) CrashNode(ctx context.Context, n StoreNode, keepData bool) error {
	if err := n.Node.Crash(keepData); err != nil {
		return fmt.Errorf("cluster: restarting %s: %w", n.Name, err)
	}
	if !c.keydb() {
		return nil
	}
	r := c.Region(n.Region)
	if err := c.mesh(r); err != nil {
		return err
	}
	return c.waitSynced(ctx, r)
}

// WaitStoreSynced waits until every KeyDB node has synced from all its
// peers, e.g. after links were restored. The Redis topology has nothing to
// wait for here (replicas' links show in the apps' readiness).
func (c *Cluster) WaitStoreSynced(ctx context.Context) error {
	if !c.keydb() {
		return nil
	}
	for _, r := range c.Regions {
		if err := c.waitSynced(ctx, r); err != nil {
			return err
		}
	}
	return nil
}
