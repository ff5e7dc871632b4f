// Command cluster runs the app as a local multi-region deployment: a Redis
// primary and a replica per region behind links that can be delayed (or,
// with -topology keydb, a KeyDB multi-master node per region, meshed
// through such links), and app instances per region, all on 127.0.0.1.
//
//	go run ./cmd/cluster [-topology redis|keydb] [-regions ams,iad,syd] [-instances ams=2] [-latency 40ms] [-dir DIR] [-binary PATH] [-for 30s] [-- app flags]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"globalpresence/internal/cluster"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, a second one kills at once; the kernel then
	// kills the apps and redis too (Pdeathsig).
	go func() {
		<-ctx.Done()
		stop()
	}()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		// Errors name their source ("cluster: ..."), as the library's do.
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// run starts the cluster, prints where everything is, and stops it all when
// ctx ends or -for has passed.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: cluster [flags] [-- app flags]")
		fs.PrintDefaults()
	}
	topology := fs.String("topology", cluster.TopologyRedis, "store topology: redis (primary + replicas) or keydb (multi-master node per region)")
	regions := fs.String("regions", "ams,iad,syd", "comma-separated regions; the first hosts the Redis primary")
	instances := fs.String("instances", "", "app instances per region, e.g. ams=2,iad=1 (default: 2 in the first region, 1 elsewhere)")
	latency := fs.Duration("latency", 0, "one-way delay on every cross-region link (replication and app→primary)")
	dir := fs.String("dir", "", "working dir for redis data and app logs; reused, the primary keeps its data (default: a temp dir, removed on exit)")
	binary := fs.String("binary", "", "app binary (default: build it)")
	runFor := fs.Duration("for", 0, "stop by itself after this long (0: until Ctrl-C)")
	direct := fs.Bool("direct", false, "no proxies on the links: replicas and writes reach the primary straight (to measure the store's own hop; no -latency)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("cluster: %w", err)
	}
	cfg := cluster.Config{
		Binary:   *binary,
		Topology: *topology,
		Latency:  *latency,
		Direct:   *direct,
		Dir:      *dir,
		AppArgs:  fs.Args(),
		Log:      stderr,
	}
	for _, r := range strings.Split(*regions, ",") {
		if r = strings.TrimSpace(r); r != "" {
			cfg.Regions = append(cfg.Regions, r)
		}
	}
	if len(cfg.Regions) == 0 {
		return errors.New("cluster: -regions is empty")
	}
	var err error
	if cfg.Instances, err = parseInstances(*instances, cfg.Regions[0]); err != nil {
		return err
	}

	if cfg.Binary == "" {
		tmp, err := os.MkdirTemp("", "globalpresence-bin-")
		if err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
		defer os.RemoveAll(tmp)
		fmt.Fprintln(stderr, "cluster: building the app")
		if cfg.Binary, err = cluster.BuildApp(tmp); err != nil {
			if ctx.Err() != nil {
				return nil // interrupted while building: nothing to stop
			}
			return err
		}
	}

	c, err := cluster.Start(ctx, cfg)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "cluster: interrupted while starting:", err)
			return nil
		}
		return err
	}
	printTable(stdout, c, *dir == "")

	var timeout <-chan time.Time
	if *runFor > 0 {
		timer := time.NewTimer(*runFor)
		defer timer.Stop()
		timeout = timer.C
	}
	select {
	case <-ctx.Done():
		fmt.Fprintln(stderr, "cluster: stopping")
	case <-timeout:
		fmt.Fprintf(stderr, "cluster: %v passed, stopping\n", *runFor)
	}
	return c.Stop()
}

// parseInstances reads "ams=2,iad=1". Empty means two in the first region,
// so the default cluster has a region with more than one instance.
func parseInstances(s, first string) (map[string]int, error) {
	if strings.TrimSpace(s) == "" {
		return map[string]int{first: 2}, nil
	}
	m := map[string]int{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		n, err := strconv.Atoi(v)
		if !ok || k == "" || err != nil {
			return nil, fmt.Errorf("cluster: -instances: %q is not REGION=N", kv)
		}
		m[k] = n
	}
	return m, nil
}

func printTable(w io.Writer, c *cluster.Cluster, tempDir bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tINSTANCE\tURL\tPID")
	for _, a := range c.Apps() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", a.Region, a.Name, a.URL(), a.PID())
	}
	fmt.Fprintln(tw)
	if c.Topology() == cluster.TopologyKeyDB {
		printKeyDB(tw, c)
	} else {
		printRedis(tw, c)
	}
	tw.Flush()
	removed := ""
	if tempDir {
		removed = " (removed on exit)"
	}
	fmt.Fprintf(w, "\nStore data and app logs in %s%s\nPress Ctrl-C to stop.\n", c.Dir, removed)
}

func printKeyDB(tw io.Writer, c *cluster.Cluster) {
	fmt.Fprintln(tw, "KEYDB\tREGION\tADDRESS\tLATENCY\tPID")
	for _, r := range c.Regions {
		fmt.Fprintf(tw, "node\t%s\t%s\t%v\t%d\n", r.Name, r.Node.Addr(), c.Latency(), r.Node.PID())
	}
}

func printRedis(tw io.Writer, c *cluster.Cluster) {
	fmt.Fprintln(tw, "REDIS\tREGION\tADDRESS\tREPLICATES VIA\tAPPS WRITE VIA\tLATENCY\tPID")
	fmt.Fprintf(tw, "primary\t%s\t%s\t-\t-\t-\t%d\n", c.Regions[0].Name, c.Primary.Addr(), c.Primary.PID())
	for i, r := range c.Regions {
		lat := c.Latency()
		if i == 0 {
			lat = 0 // next to the primary
		}
		fmt.Fprintf(tw, "replica\t%s\t%s\t%s\t%s\t%v\t%d\n",
			r.Name, r.Replica.Addr(), r.ReplAddr(c.Primary), r.WriteAddr(c.Primary), lat, r.Replica.PID())
	}
}
