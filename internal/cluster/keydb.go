package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"globalpresence/internal/netproxy"
	"globalpresence/internal/redisnode"
)

// syncTimeout bounds the wait for a KeyDB node to finish syncing from
// every peer.
const syncTimeout = 20 * time.Second

// startKeyDB starts one multi-master node per region, then a link per
// ordered pair of regions, meshes every node with every other through
// those links, and waits until every node has synced from every peer:
// apps started earlier could write to a node that an empty peer's full
// sync then overwrites.
func (c *Cluster) startKeyDB(ctx context.Context) error {
	errs := make([]error, len(c.Regions))
	var wg sync.WaitGroup
	for i, r := range c.Regions {
		wg.Go(func() {
			n, err := redisnode.Start(redisnode.Options{
				Dir:         filepath.Join(c.Dir, r.Name, "keydb"),
				KeyDB:       true,
				ExtraConfig: []string{notifyConfig},
			})
			if err != nil {
				errs[i] = fmt.Errorf("cluster: %s keydb node: %w", r.Name, err)
				return
			}
			r.Node = n
			c.logf("%s keydb node %s (pid %d)", r.Name, n.Addr(), n.PID())
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, r := range c.Regions {
		r.PeerLinks = map[string]*netproxy.Proxy{}
		if c.cfg.Direct {
			continue
		}
		for _, peer := range c.Regions {
			if peer == r {
				continue
			}
			l, err := netproxy.Start("127.0.0.1:0", peer.Node.Addr())
			if err != nil {
				return fmt.Errorf("cluster: %s→%s link: %w", peer.Name, r.Name, err)
			}
			l.SetLatency(c.latency)
			r.PeerLinks[peer.Name] = l
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for i, r := range c.Regions {
		wg.Go(func() { errs[i] = c.mesh(r) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for i, r := range c.Regions {
		wg.Go(func() { errs[i] = c.waitSynced(ctx, r) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	c.logf("%d keydb nodes meshed and synced", len(c.Regions))
	return nil
}

// peerAddr is where r's node replicates peer from: their link, or peer's
// node itself when Direct.
func (c *Cluster) peerAddr(r, peer *Region) string {
	if l := r.PeerLinks[peer.Name]; l != nil {
		return l.Addr()
	}
	return peer.Node.Addr()
}

// mesh makes r's node replicate from every other region's node. KeyDB
// answers "Already connected" for a peer it has, so it is safe to repeat;
// a restarted node has forgotten its peers and needs it.
func (c *Cluster) mesh(r *Region) error {
	for _, peer := range c.Regions {
		if peer == r {
			continue
		}
		host, port, _ := net.SplitHostPort(c.peerAddr(r, peer))
		if _, err := r.Node.Do("REPLICAOF", host, port); err != nil {
			return fmt.Errorf("cluster: %s REPLICAOF %s: %w", r.Name, peer.Name, err)
		}
	}
	return nil
}

// waitSynced waits until r's node has a live link to every peer and no
// sync in progress.
func (c *Cluster) waitSynced(ctx context.Context, r *Region) error {
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	want := len(c.Regions) - 1
	var last string
	for {
		info, err := r.Node.Do("INFO", "replication")
		if err == nil && meshSynced(info, want) {
			return nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = info
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: %s keydb node not synced with %d peers: %w\n%s", r.Name, want, ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// meshSynced reads KeyDB's INFO replication: every one of want masters
// connected, the global link up, and no sync in progress (KeyDB may print
// the field per master).
func meshSynced(info string, want int) bool {
	connected, up, syncing := -1, false, false
	for _, l := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), ":")
		if !ok {
			continue
		}
		switch {
		case k == "connected_masters":
			fmt.Sscan(v, &connected)
		case k == "master_global_link_status":
			up = v == "up"
		case strings.HasSuffix(k, "sync_in_progress") && v != "0":
			syncing = true
		case strings.HasSuffix(k, "link_status") && v != "up":
			up = false
		}
	}
	return up && !syncing && connected == want
}
