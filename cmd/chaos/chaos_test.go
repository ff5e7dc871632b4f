// Runs the checker for real, briefly, on both topologies with a fixed seed:
// CI's short chaos run. The long runs' command is in the README.
package main

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"globalpresence/internal/cluster"
	"globalpresence/internal/redisnode"
)

func TestMain(m *testing.M) {
	code := m.Run()
	cluster.RemoveTestBinary()
	os.Exit(code)
}

var lastLine = regexp.MustCompile(`^chaos: seed=7 ops=(\d+) faults=(\d+) violations=0$`)

func TestChaos(t *testing.T) {
	for _, topology := range []string{cluster.TopologyRedis, cluster.TopologyKeyDB} {
		t.Run(topology, func(t *testing.T) {
			if topology == cluster.TopologyKeyDB {
				redisnode.RequireKeyDB(t)
			}
			bin := cluster.TestBinary(t)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			var out cluster.LogBuffer
			code := run(ctx, []string{"-topology", topology, "-duration", "15s", "-seed", "7",
				"-binary", bin, "-out", t.TempDir() + "/history.jsonl"}, &out, &out)
			lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
			last := lines[len(lines)-1]
			if code != 0 || !lastLine.MatchString(last) {
				t.Fatalf("exit %d, last line %q; output:\n%s", code, last, out.String())
			}
		})
	}
}
