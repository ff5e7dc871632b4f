// Command chaos runs the app as a local three-region cluster, drives it
// with random clients while injecting one fault at a time, heals
// everything and checks the invariants against what the clients were
// told (see internal/chaos). Its last line is always
//
//	chaos: seed=N ops=N faults=N violations=N
//
// and it exits 1 on any violation, after writing the history as JSON
// lines to -out.
//
//	go run ./cmd/chaos -topology redis|keydb -duration 60s -seed N [-out FILE] [-keep DIR] [-binary PATH]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"globalpresence/internal/chaos"
	"globalpresence/internal/cluster"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// A second signal kills at once; the kernel then kills the apps and
	// the store nodes too (Pdeathsig).
	go func() {
		<-ctx.Done()
		stop()
	}()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	topology := fs.String("topology", cluster.TopologyRedis, "store topology: redis (primary + replicas) or keydb (multi-master)")
	duration := fs.Duration("duration", 60*time.Second, "how long to drive traffic and faults before healing and checking")
	seed := fs.Int64("seed", 1, "seed of the random clients and faults")
	out := fs.String("out", "", "where to write the history on a violation (default: chaos-TOPOLOGY-seed-N.jsonl in the temp dir)")
	keep := fs.String("keep", "", "keep the cluster's dir (store data, app logs) here instead of a removed temp dir")
	binary := fs.String("binary", "", "app binary (default: build it)")
	settle := fs.Duration("settle", 10*time.Second, "wait after healing before checking")
	noFaults := fs.Bool("no-faults", false, "traffic only (to tell the checker's own noise from the faults' effects)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	res, err := chaos.Run(ctx, chaos.Config{
		Topology: *topology, Duration: *duration, Seed: *seed, Binary: *binary,
		Dir: *keep, Settle: *settle, Faults: !*noFaults, Log: stdout,
	})
	code := 0
	for _, v := range res.Violations {
		fmt.Fprintln(stdout, "chaos: violation:", v)
	}
	if err != nil {
		fmt.Fprintln(stdout, "chaos: error:", err)
		code = 1
	}
	if len(res.Violations) > 0 || err != nil {
		path := *out
		if path == "" {
			path = fmt.Sprintf("%s/chaos-%s-seed-%d.jsonl", os.TempDir(), *topology, *seed)
		}
		extra := []any{map[string]any{"kind": "final", "final": res.Final}}
		for _, v := range res.Violations {
			extra = append(extra, map[string]any{"kind": "violation", "violation": v})
		}
		if werr := res.History.WriteJSONL(path, extra...); werr != nil {
			fmt.Fprintln(stdout, "chaos: writing the history:", werr)
		} else {
			fmt.Fprintln(stdout, "chaos: history written to", path)
		}
		code = 1
	}
	if *keep != "" {
		fmt.Fprintln(stdout, "chaos: cluster dir kept in", *keep)
	}
	fmt.Fprintf(stdout, "chaos: seed=%d ops=%d faults=%d violations=%d\n", *seed, res.Ops, res.Faults, len(res.Violations))
	return code
}
