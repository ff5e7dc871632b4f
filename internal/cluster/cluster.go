// Package cluster runs the app as a local multi-region deployment on
// loopback, in one of two store topologies. Redis (the default): one Redis
// primary in the first region, a replica per region that replicates
// through a proxy (so the link can be delayed, cut or stalled), and app
// processes per region that read from their regional replica and write to
// the primary through another proxy. KeyDB: one multi-master node per
// region, each replicating from every other through a proxy per link, and
// apps that read and write their regional node. It backs cmd/cluster,
// cmd/chaos and the multi-region end-to-end tests.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"globalpresence/internal/netproxy"
	"globalpresence/internal/redisnode"
)

const (
	// readyTimeout bounds Start's wait for every app's /readyz.
	readyTimeout = 20 * time.Second
	// notifyConfig is what the app's store needs on every node it follows;
	// it sets it itself too, but a managed Redis may refuse CONFIG SET.
	notifyConfig = "notify-keyspace-events Kgx"
)

// Store topologies for Config.Topology.
const (
	TopologyRedis = "redis" // primary in Regions[0], a replica per region
	TopologyKeyDB = "keydb" // a multi-master node per region, fully meshed
)

// Config describes a cluster.
type Config struct {
	Binary    string         // app binary path (required); see BuildApp
	Topology  string         // TopologyRedis ("" too) or TopologyKeyDB
	Regions   []string       // region codes, e.g. {"ams", "iad", "syd"}; Regions[0] hosts the primary
	Instances map[string]int // app instances per region (absent: 1)
	Latency   time.Duration  // one-way delay on every cross-region link
	// Direct leaves out the links' proxies: replicas and writes reach the
	// primary straight, to measure the store's own hop. Links can then be
	// neither delayed nor cut.
	Direct  bool
	Dir     string    // working dir for redis data and app logs ("": a temp dir, removed by Stop)
	AppArgs []string  // extra flags for every app instance, e.g. {"-coalesce", "50ms"}
	AppEnv  []string  // extra KEY=VALUE env for every app instance; overrides ours
	Log     io.Writer // progress lines and unexpected app exits (nil: discard)
}

// Cluster is a running local deployment. Its fields are set by Start and
// not changed afterwards.
type Cluster struct {
	Dir     string          // working dir: primary/, REGION/replica/ or REGION/keydb/, REGION/NAME.log
	Primary *redisnode.Node // in Regions[0]; nil in the KeyDB topology
	Regions []*Region       // in Config.Regions order

	cfg    Config
	ownDir bool
	logMu  sync.Mutex

	mu      sync.Mutex
	latency time.Duration
	stopped bool
}

// Region is one region's store node, its WAN links and its apps.
type Region struct {
	Name string
	// Redis topology.
	Replica   *redisnode.Node // replicates from the primary through ReplLink
	ReplLink  *netproxy.Proxy // replica → primary (nil if Direct)
	WriteLink *netproxy.Proxy // this region's apps → primary, REDIS_WRITE_URL (nil if Direct)
	// KeyDB topology.
	Node      *redisnode.Node            // the region's multi-master node
	PeerLinks map[string]*netproxy.Proxy // by peer region: Node replicates from that peer through it (empty if Direct)

	Apps []*App
}

// Start starts the primary, then every region's links and replica, then
// every app, and returns once every app's /readyz answers 200 (within 20 s).
// ctx bounds only the startup. On failure it stops whatever it started and
// returns an error that quotes the failing apps' logs.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, latency: cfg.Latency}
	if err := c.start(ctx); err != nil {
		if !strings.HasPrefix(err.Error(), "cluster: ") {
			err = fmt.Errorf("cluster: start: %w", err) // file system errors, ctx.Err()
		}
		if serr := c.Stop(); serr != nil {
			err = errors.Join(err, fmt.Errorf("cluster: stopping after the failed start: %w", serr))
		}
		return nil, err
	}
	return c, nil
}

func (cfg *Config) validate() error {
	if cfg.Binary == "" {
		return errors.New("cluster: Config.Binary is required (see BuildApp)")
	}
	if fi, err := os.Stat(cfg.Binary); err != nil || fi.IsDir() {
		return fmt.Errorf("cluster: app binary %q: not a file (%v)", cfg.Binary, err)
	}
	if len(cfg.Regions) == 0 {
		return errors.New("cluster: Config.Regions is empty")
	}
	seen := map[string]bool{}
	for _, r := range cfg.Regions {
		if !validName(r) {
			return fmt.Errorf("cluster: region %q: want lower-case letters, digits and dashes", r)
		}
		if seen[r] {
			return fmt.Errorf("cluster: region %q given twice", r)
		}
		seen[r] = true
	}
	for r, n := range cfg.Instances {
		if !seen[r] {
			return fmt.Errorf("cluster: instances for %q, which is not one of the regions %v", r, cfg.Regions)
		}
		if n < 1 {
			return fmt.Errorf("cluster: %d instances for %q; want at least 1", n, r)
		}
	}
	if cfg.Latency < 0 {
		return fmt.Errorf("cluster: negative latency %v", cfg.Latency)
	}
	if cfg.Direct && cfg.Latency > 0 {
		return errors.New("cluster: direct links cannot be delayed")
	}
	switch cfg.Topology {
	case "", TopologyRedis, TopologyKeyDB:
	default:
		return fmt.Errorf("cluster: topology %q: want %q or %q", cfg.Topology, TopologyRedis, TopologyKeyDB)
	}
	return nil
}

func (c *Cluster) keydb() bool { return c.cfg.Topology == TopologyKeyDB }

// Topology is the cluster's store topology, TopologyRedis or TopologyKeyDB.
func (c *Cluster) Topology() string {
	if c.keydb() {
		return TopologyKeyDB
	}
	return TopologyRedis
}

// validName keeps region codes safe as directory names and env values.
func validName(s string) bool {
	if s == "" || s[0] == '-' {
		return false
	}
	for _, c := range s {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func (c *Cluster) logf(format string, args ...any) {
	if c.cfg.Log == nil {
		return
	}
	// Apps report crashes from their own goroutines.
	c.logMu.Lock()
	defer c.logMu.Unlock()
	fmt.Fprintf(c.cfg.Log, "cluster: "+format+"\n", args...)
}

func (c *Cluster) start(ctx context.Context) error {
	if c.cfg.Dir == "" {
		dir, err := os.MkdirTemp("", "globalpresence-cluster-")
		if err != nil {
			return err
		}
		c.Dir, c.ownDir = dir, true
	} else {
		dir, err := filepath.Abs(c.cfg.Dir)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		c.Dir = dir
	}
	// Every Region exists before anything starts, so Stop can clean up
	// after a failure at any point.
	for _, name := range c.cfg.Regions {
		c.Regions = append(c.Regions, &Region{Name: name})
	}

	startStore := c.startRedis
	if c.keydb() {
		startStore = c.startKeyDB
	}
	if err := startStore(ctx); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	client := &http.Client{
		Timeout: 2 * time.Second,
		// No idle connections left behind to apps that get stopped.
		Transport: &http.Transport{DisableKeepAlives: true},
	}
	for _, r := range c.Regions {
		n := c.cfg.Instances[r.Name]
		if n == 0 {
			n = 1
		}
		for i := 1; i <= n; i++ {
			name := fmt.Sprintf("%s-%d", r.Name, i)
			r.Apps = append(r.Apps, &App{
				Name:    name,
				Region:  r.Name,
				bin:     c.cfg.Binary,
				args:    c.cfg.AppArgs,
				env:     appEnv(r.Name, name, c.readURL(r), c.writeURL(r), c.cfg.AppEnv),
				logPath: filepath.Join(c.Dir, r.Name, name+".log"),
				logf:    c.logf,
				client:  client,
			})
		}
	}
	apps := c.Apps()
	errs := make([]error, len(apps))
	var wg sync.WaitGroup
	for i, a := range apps {
		wg.Go(func() {
			if errs[i] = a.Start(); errs[i] == nil {
				c.logf("%s (pid %d) listening on %s", a.Name, a.PID(), a.URL())
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}

	rctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for i, a := range apps {
		wg.Go(func() {
			if err := a.WaitReady(rctx); err != nil {
				errs[i] = fmt.Errorf("%w\n%s", err, a.logTail())
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	c.logf("%d apps in %d regions ready", len(apps), len(c.Regions))
	return nil
}

// startRedis starts the primary, then every region's links and replica.
func (c *Cluster) startRedis(ctx context.Context) error {
	primary, err := redisnode.Start(redisnode.Options{
		Dir:         filepath.Join(c.Dir, "primary"),
		ExtraConfig: []string{notifyConfig},
	})
	if err != nil {
		return fmt.Errorf("cluster: primary: %w", err)
	}
	c.Primary = primary
	c.logf("primary redis %s (pid %d) in %s", primary.Addr(), primary.PID(), c.cfg.Regions[0])
	if err := ctx.Err(); err != nil {
		return err
	}
	// Regions in parallel: each replica's initial sync takes a few round
	// trips, which add up over delayed links.
	errs := make([]error, len(c.Regions))
	var wg sync.WaitGroup
	for i, r := range c.Regions {
		wg.Go(func() { errs[i] = c.startRegion(r, c.linkLatency(i)) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// readURL is the store r's apps read from (REDIS_URL).
func (c *Cluster) readURL(r *Region) string {
	if c.keydb() {
		return r.Node.URL()
	}
	return r.Replica.URL()
}

// writeURL is where r's apps write (REDIS_WRITE_URL); "" when they write
// where they read.
func (c *Cluster) writeURL(r *Region) string {
	if c.keydb() {
		return ""
	}
	return "redis://" + r.WriteAddr(c.Primary) + "/0"
}

// startRegion starts r's two links to the primary (unless Direct) and its
// replica.
func (c *Cluster) startRegion(r *Region, latency time.Duration) error {
	var err error
	if !c.cfg.Direct {
		if r.ReplLink, err = netproxy.Start("127.0.0.1:0", c.Primary.Addr()); err != nil {
			return fmt.Errorf("cluster: %s replication link: %w", r.Name, err)
		}
		if r.WriteLink, err = netproxy.Start("127.0.0.1:0", c.Primary.Addr()); err != nil {
			return fmt.Errorf("cluster: %s write link: %w", r.Name, err)
		}
		r.ReplLink.SetLatency(latency)
		r.WriteLink.SetLatency(latency)
	}
	replica, err := redisnode.Start(redisnode.Options{
		Dir:         filepath.Join(c.Dir, r.Name, "replica"),
		ReplicaOf:   r.ReplAddr(c.Primary),
		ExtraConfig: []string{notifyConfig},
	})
	if err != nil {
		return fmt.Errorf("cluster: %s replica: %w", r.Name, err)
	}
	r.Replica = replica
	c.logf("%s replica %s (pid %d), replicating via %s, writes via %s, latency %v",
		r.Name, replica.Addr(), replica.PID(), r.ReplAddr(c.Primary), r.WriteAddr(c.Primary), latency)
	return nil
}

// ReplAddr is where r's replica replicates from: its link, or the primary.
func (r *Region) ReplAddr(primary *redisnode.Node) string {
	if r.ReplLink == nil {
		return primary.Addr()
	}
	return r.ReplLink.Addr()
}

// WriteAddr is where r's apps write: their link, or the primary.
func (r *Region) WriteAddr(primary *redisnode.Node) string {
	if r.WriteLink == nil {
		return primary.Addr()
	}
	return r.WriteLink.Addr()
}

// appEnv is the parent's environment without anything that would steer the
// app elsewhere (PORT would fight -addr), plus the instance's own settings
// and then extra, which wins over both (exec keeps the last duplicate).
func appEnv(region, name, readURL, writeURL string, extra []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "PORT", "FLY_REGION", "FLY_ALLOC_ID", "REDIS_URL", "REDIS_WRITE_URL":
			continue
		}
		env = append(env, kv)
	}
	env = append(env,
		"FLY_REGION="+region,
		"FLY_ALLOC_ID="+name,
		"REDIS_URL="+readURL,
	)
	if writeURL != "" {
		env = append(env, "REDIS_WRITE_URL="+writeURL)
	}
	return append(env, extra...)
}

// linkLatency is the delay on region i's links: none in the primary's own
// region, which is next to it.
func (c *Cluster) linkLatency(i int) time.Duration {
	if i == 0 {
		return 0
	}
	return c.latency
}

// SetLatency sets the one-way delay of every cross-region link (in the
// Redis topology every region's replication and write link except the
// primary region's; in the KeyDB topology every link). It applies at once,
// also to data in flight. Direct links have no delay.
func (c *Cluster) SetLatency(d time.Duration) {
	if d < 0 {
		d = 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.latency = d
	for _, l := range c.Links() {
		if l.CrossRegion {
			l.Proxy.SetLatency(d)
		}
	}
}

// Latency is the current one-way delay of the cross-region links.
func (c *Cluster) Latency() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.latency
}

// Region returns the region named name, or nil.
func (c *Cluster) Region(name string) *Region {
	for _, r := range c.Regions {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// Apps lists every app, region by region.
func (c *Cluster) Apps() []*App {
	var apps []*App
	for _, r := range c.Regions {
		apps = append(apps, r.Apps...)
	}
	return apps
}

// WaitReady waits until every app's /readyz answers 200, e.g.
// after a link was restored. An app that is not running is an error.
func (c *Cluster) WaitReady(ctx context.Context) error {
	apps := c.Apps()
	errs := make([]error, len(apps))
	var wg sync.WaitGroup
	for i, a := range apps {
		wg.Go(func() { errs[i] = a.WaitReady(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Stop stops the apps first (SIGTERM, in parallel, so their tabs leave
// cleanly while the store is still there), then the links, the replicas
// and the primary, and removes Dir if Start created it. It returns every
// error met on the way, including apps that had crashed. Later calls do
// nothing.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return nil
	}
	c.stopped = true
	c.mu.Unlock()

	apps := c.Apps()
	errs := make([]error, len(apps))
	var wg sync.WaitGroup
	for i, a := range apps {
		wg.Go(func() { errs[i] = a.Term() })
	}
	wg.Wait()
	// Links before replicas, so the primary has no replica to wait for
	// when it shuts down.
	for _, l := range c.Links() {
		if err := l.Proxy.Close(); err != nil {
			errs = append(errs, fmt.Errorf("cluster: %s link: %w", l.Name, err))
		}
	}
	replErrs := make([]error, len(c.Regions))
	for i, r := range c.Regions {
		for _, n := range []*redisnode.Node{r.Replica, r.Node} {
			if n != nil {
				wg.Go(func() {
					if err := n.Stop(); err != nil {
						replErrs[i] = fmt.Errorf("cluster: %s store node: %w", r.Name, err)
					}
				})
			}
		}
	}
	wg.Wait()
	errs = append(errs, replErrs...)
	if c.Primary != nil {
		if err := c.Primary.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("cluster: primary: %w", err))
		}
	}
	if c.ownDir && c.Dir != "" {
		if err := os.RemoveAll(c.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	c.logf("stopped")
	return errors.Join(errs...)
}
