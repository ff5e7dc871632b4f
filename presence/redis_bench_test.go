package presence

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
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

// BenchmarkRedisFirstReads prints how many rooms a second an instance reads
// for the first time when 3,000 streams of 3,000 rooms it did not serve
// open at once, as after a restart: each waits for its room's read.
//
//	go test -run '^$' -bench RedisFirstReads -benchtime 3x ./presence
func BenchmarkRedisFirstReads(b *testing.B) {
	const rooms = 3000
	node := redisnode.MustStart(b, redisnode.Options{})
	ctx := context.Background()
	open := func(inst string) *Redis {
		s, err := NewRedis(RedisConfig{URL: node.URL(), Region: "ams", Instance: inst, Log: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); s.Ready(ctx) != nil; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				b.Fatal("store not ready")
			}
		}
		return s
	}
	writer := open("writer")
	defer writer.Close()
	for i := range rooms {
		room := fmt.Sprint("room", i)
		if err := writer.Join(ctx, room, Tab{ID: "t", User: "U", Region: "ams", Since: time.Now()}); err != nil {
			b.Fatal(err)
		}
		if _, err := writer.Say(ctx, room, Post{User: "U", Text: "hi"}); err != nil {
			b.Fatal(err)
		}
	}
	var took time.Duration
	for n := range b.N {
		reader := open(fmt.Sprint("reader", n))
		start := time.Now()
		var wg sync.WaitGroup
		for i := range rooms {
			wg.Go(func() {
				if _, err := reader.Snapshot(ctx, fmt.Sprint("room", i), AllParts); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		took += time.Since(start)
		_ = reader.Close()
	}
	b.ReportMetric(float64(rooms*b.N)/took.Seconds(), "rooms/s")
}
