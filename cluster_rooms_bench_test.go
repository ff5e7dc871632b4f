package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"globalpresence/internal/cluster"
	"globalpresence/internal/redisnode"
)

// BenchmarkClusterRooms spreads rooms over a 3-region cluster (one instance
// per region; room k is watched by one stream on instance k mod 3), posts
// one message to every room through another region's instance, and prints
// what each instance heard: only the announcements of the rooms it serves.
// Then it counts the store's commands over 10 s idle, per node: they must
// not grow with the rooms. A measurement of about a minute, run by hand
// (see BENCHMARKS.md), not with every benchmark in CI:
//
//	go test -run '^$' -bench ClusterRooms -benchtime 1x -timeout 20m . -args -cluster-rooms
func BenchmarkClusterRooms(b *testing.B) {
	if !*clusterRoomsBench {
		b.Skip("about a minute: run with -args -cluster-rooms")
	}
	for _, rooms := range []int{100, 10000} {
		b.Run(fmt.Sprintf("rooms=%d", rooms), func(b *testing.B) {
			for b.Loop() {
				clusterRooms(b, rooms)
			}
		})
	}
}

var clusterRoomsBench = flag.Bool("cluster-rooms", false, "run BenchmarkClusterRooms (a 3-region cluster, about a minute)")

func clusterRooms(b *testing.B, rooms int) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Config{
		Binary: cluster.TestBinary(b), Regions: []string{"ams", "iad", "syd"}, Direct: true, Dir: b.TempDir(),
		AppArgs: []string{"-streams-per-client", "100000", "-hi-rate", "100000", "-hi-burst", "100000"},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := c.Stop(); err != nil {
			b.Errorf("stopping the cluster: %v", err)
		}
	}()
	apps := c.Apps()
	room := func(k int) string { return "cl/r" + strconv.Itoa(k) }

	// One raw stream per room, read and discarded.
	var conns []net.Conn
	defer func() {
		for _, conn := range conns {
			conn.Close()
		}
	}()
	for k := range rooms {
		addr := strings.TrimPrefix(apps[k%3].URL(), "http://")
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, conn)
		fmt.Fprintf(conn, "GET /rooms/%s/events?format=json HTTP/1.1\r\nHost: %s\r\n\r\n", room(k), addr)
		go func() { _, _ = io.Copy(io.Discard, conn) }()
	}
	served := func(i int) int { return (rooms - i + 2) / 3 } // rooms k with k mod 3 == i
	for i, a := range apps {
		waitMetric(b, a.URL(), "gp_rooms", strconv.Itoa(served(i)), time.Minute)
	}

	// A message to every room, posted through the next region's instance.
	heard := func(a *cluster.App) (int, int) {
		n, _ := strconv.Atoi(metricValue(b, a.URL(), "gp_store_announcements_total"))
		f, _ := strconv.Atoi(metricValue(b, a.URL(), `gp_store_events_total{kind="foreign_announcement"}`))
		return n, f
	}
	// The joins' own announcements may still be arriving: start from
	// counts that stopped moving.
	before := make([][2]int, len(apps))
	for i, a := range apps {
		for n, _ := heard(a); n != before[i][0]; n, _ = heard(a) {
			before[i][0] = n
			time.Sleep(time.Second)
		}
		_, before[i][1] = heard(a)
	}
	var wg sync.WaitGroup
	work := make(chan int)
	for range 8 {
		wg.Go(func() {
			for k := range work {
				u := apps[(k+1)%3].URL() + "/rooms/" + room(k) + "/hi"
				resp, err := http.PostForm(u, url.Values{"text": {"hello " + room(k)}})
				if err != nil {
					b.Error(err)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					b.Errorf("POST %s: %s", u, resp.Status)
				}
			}
		})
	}
	for k := range rooms {
		work <- k
	}
	close(work)
	wg.Wait()
	time.Sleep(2 * time.Second) // the last announcements arrive
	for i, a := range apps {
		n, f := heard(a)
		b.Logf("rooms=%d %s serves %d rooms: heard %d announcements for %d posts spread over every room, %d foreign",
			rooms, a.Name, served(i), n-before[i][0], rooms, f-before[i][1])
		b.ReportMetric(float64(n-before[i][0])/float64(served(i)), "heard/served_"+a.Region)
		b.ReportMetric(float64(f-before[i][1]), "foreign_"+a.Region)
	}

	// Idle: store commands per node over 10 s.
	nodes := map[string]*redisnode.Node{"primary": c.Primary}
	for _, r := range c.Regions {
		nodes[r.Name+"-replica"] = r.Replica
	}
	calls := func(n *redisnode.Node) int {
		c, err := n.Commands()
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	time.Sleep(2 * time.Second)
	start := make(map[string]int)
	for name, n := range nodes {
		start[name] = calls(n)
	}
	time.Sleep(10 * time.Second)
	for name, n := range nodes {
		perS := float64(calls(n)-start[name]) / 10
		b.Logf("rooms=%d idle: %s ran %.1f commands/s", rooms, name, perS)
		b.ReportMetric(perS, "cmds/s_"+name)
	}
}

// waitMetric waits until an app's metric reads want.
func waitMetric(tb testing.TB, base, name, want string, within time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for got := metricValue(tb, base, name); got != want; got = metricValue(tb, base, name) {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: %s = %s after %v, want %s", base, name, got, within, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
