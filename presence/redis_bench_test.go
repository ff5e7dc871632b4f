package presence

import (
	"context"
	"fmt"
	"testing"
	"time"

	"globalpresence/internal/redisnode"
)

// BenchmarkRedisIdleCommands prints the store commands one idle instance
// sends per second with 1, 1,000 and 10,000 joined rooms (one tab each):
// liveness is one heartbeat per instance, so the three must be within 10%
// of each other. The window is fixed (5 s); b.N is not used.
//
//	go test -run '^$' -bench RedisIdleCommands -benchtime 1x ./presence
func BenchmarkRedisIdleCommands(b *testing.B) {
	for _, rooms := range []int{1, 1000, 10000} {
		b.Run(fmt.Sprintf("rooms=%d", rooms), func(b *testing.B) {
			node := redisnode.MustStart(b, redisnode.Options{})
			s, err := NewRedis(RedisConfig{URL: node.URL(), Region: "ams", Instance: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			for deadline := time.Now().Add(10 * time.Second); s.Ready(ctx) != nil; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					b.Fatal("store not ready")
				}
			}
			for i := range rooms {
				if err := s.Join(ctx, fmt.Sprint("room", i), Tab{ID: "t", User: "U", Region: "ams", Since: time.Now()}); err != nil {
					b.Fatal(err)
				}
			}
			time.Sleep(time.Second) // let the joins' aftermath settle
			const window = 5 * time.Second
			before := totalCalls(b, node)
			time.Sleep(window)
			n := totalCalls(b, node) - before - 1 // the INFO that read it
			b.ReportMetric(float64(n)/window.Seconds(), "cmds/s")
		})
	}
}

// totalCalls is how many commands node has run.
func totalCalls(tb testing.TB, node *redisnode.Node) int {
	tb.Helper()
	n, err := node.Commands()
	if err != nil {
		tb.Fatal(err)
	}
	return n
}
