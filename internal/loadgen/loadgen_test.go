package loadgen

import (
	"io"
	"math"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

func TestParseTarget(t *testing.T) {
	for raw, want := range map[string]Target{
		"http://127.0.0.1:8080":      {Addr: "127.0.0.1:8080", Host: "127.0.0.1:8080", Base: "http://127.0.0.1:8080", Path: "/events?format=json", V4: true},
		"http://localhost:9000/app/": {Addr: "127.0.0.1:9000", Host: "localhost:9000", Base: "http://127.0.0.1:9000/app", Path: "/app/events?format=json", V4: true},
		"http://127.3.4.5":           {Addr: "127.3.4.5:80", Host: "127.3.4.5", Base: "http://127.3.4.5:80", Path: "/events?format=json", V4: true},
		"http://[::1]:8080":          {Addr: "[::1]:8080", Host: "[::1]:8080", Base: "http://[::1]:8080", Path: "/events?format=json"},
	} {
		got, err := parseTarget(raw)
		if err != nil || got != want {
			t.Errorf("parseTarget(%q) = %+v, %v; want %+v", raw, got, err, want)
		}
	}
	for _, raw := range []string{"http://10.0.0.1", "http://example.com", "http://[::]:80", "ftp://127.0.0.1", "http://127.0.0.1:99999", "http://localhost.example.com"} {
		if _, err := parseTarget(raw); err == nil {
			t.Errorf("parseTarget(%q) accepted", raw)
		}
	}
}

func TestSourceIPsStayOnLoopbackAndDiffer(t *testing.T) {
	seen := map[string]bool{}
	for k := range 100000 {
		ip := streamSource(k)
		if !ip.IsLoopback() || ip[len(ip)-1] == 0 || ip[len(ip)-1] == 255 {
			t.Fatalf("streamSource(%d) = %v", k, ip)
		}
		if seen[ip.String()] {
			t.Fatalf("streamSource(%d) = %v again", k, ip)
		}
		seen[ip.String()] = true
	}
	for _, ip := range []string{churnSource(0).String(), postSource(0).String()} {
		if seen[ip] {
			t.Errorf("%s shared between pools", ip)
		}
	}
}

func TestHistogramError(t *testing.T) {
	for us := int64(0); us < 1<<34; us = us*21/20 + 1 {
		v := bucketValue(bucketOf(us))
		if math.Abs(v-float64(us)) > 0.005*float64(us)+0.5 {
			t.Fatalf("%d µs reads back as %.1f", us, v)
		}
	}
	var h histogram
	for us := int64(1); us <= 100000; us++ {
		h.record(us)
	}
	var m merged
	m.add(h.sparse(), h.max.Load())
	for q, want := range map[float64]float64{0.5: 50, 0.9: 90, 0.99: 99, 1: 100} {
		if got := m.quantile(q); math.Abs(got-want) > want*0.005 {
			t.Errorf("quantile(%v) = %v ms, want %v", q, got, want)
		}
	}
}

func TestWindow(t *testing.T) {
	var w window
	var fresh []int64
	for _, s := range []int64{3, 1, 3, 2, 70, 1, 6, 69, 70, 200, 137, 136} {
		if w.mark(s) {
			fresh = append(fresh, s)
		}
	}
	// After 70 the window is 7..70: 1 and 6 are taken as seen, 69 is new;
	// after 200, 136 is out of it and 137 in.
	if want := []int64{3, 1, 2, 70, 69, 200, 137}; !slices.Equal(fresh, want) {
		t.Errorf("fresh = %v, want %v", fresh, want)
	}
}

func TestSplit(t *testing.T) {
	for _, c := range []struct {
		n, per int
		want   []int
	}{{10, 19000, []int{10}}, {50000, 19000, []int{16667, 16667, 16666}}, {300, 100, []int{100, 100, 100}}} {
		if got := split(c.n, c.per); !slices.Equal(got, c.want) {
			t.Errorf("split(%d, %d) = %v, want %v", c.n, c.per, got, c.want)
		}
	}
}

func TestScan(t *testing.T) {
	w := newWorker(workerConfig{Run: "abcd", MaxEvents: 10, Targets: []Target{{}}})
	var seen window
	line := []byte(`data: {"messages":[{"text":"lg:abcd:2:1000000"},{"text":"lg:zzzz:1:5"},{"text":"lg:abcd:1:1000000"},{"text":"lg:abcd:99:1"}]}`)
	w.scan(line, &seen, 3000000, 0)
	w.scan(line, &seen, 9000000, 0)
	if w.got[1].Load() != 1 || w.got[2].Load() != 1 || w.hist.max.Load() != 2000 {
		t.Errorf("got[1]=%d got[2]=%d max=%d µs", w.got[1].Load(), w.got[2].Load(), w.hist.max.Load())
	}
	// With rooms: a stream of room 2 counts its room's posts and, once
	// each, another room's as leaked; a lagging stream's event with several
	// new texts, far apart and newest first, counts them all.
	seen = window{}
	far := []byte(`data: {"messages":[{"text":"lg:abcd:150:1000000@2"},{"text":"lg:abcd:7:1000000@5"},{"text":"lg:abcd:3:1000000@2"}]}`)
	w = newWorker(workerConfig{Run: "abcd", MaxEvents: 200, NumRooms: 6, Targets: []Target{{}}})
	w.scan(far, &seen, 2000000, 2)
	w.scan(far, &seen, 2000000, 2)
	if w.got[150].Load() != 1 || w.got[3].Load() != 1 || w.got[7].Load() != 0 || w.leaked.Load() != 1 {
		t.Errorf("got[150]=%d got[3]=%d got[7]=%d leaked=%d", w.got[150].Load(), w.got[3].Load(), w.got[7].Load(), w.leaked.Load())
	}
}

func TestPlanRooms(t *testing.T) {
	// A large room beside many small ones, and rooms filled near the cap.
	for _, o := range []options{{conns: 19000, rooms: 5000, bigRoom: 2000, roomMax: 20}, {conns: 1150, rooms: 60, roomMax: 20}} {
		plan, err := planRooms(o, mrand.New(mrand.NewPCG(1, 2)))
		if err != nil || len(plan) != o.conns {
			t.Fatalf("%+v: %d streams planned, %v", o, len(plan), err)
		}
		sizes := make([]int, o.rooms)
		for _, r := range plan {
			sizes[r]++
		}
		small := sizes
		if o.bigRoom > 0 {
			small = sizes[1:]
		}
		if sizes[0] != o.bigRoom && o.bigRoom > 0 || slices.Min(small) < 1 || slices.Max(small) > o.roomMax {
			t.Errorf("%+v: room sizes: large %d, others %d..%d", o, sizes[0], slices.Min(small), slices.Max(small))
		}
	}
	for _, bad := range []options{{conns: 100, rooms: 200, roomMax: 20}, {conns: 5000, rooms: 10, roomMax: 20}, {conns: 10, bigRoom: 5, roomMax: 20}} {
		if _, err := planRooms(bad, nil); err == nil {
			t.Errorf("planRooms accepted %+v", bad)
		}
	}
}

func TestLineReader(t *testing.T) {
	big := strings.Repeat("x", 300<<10)
	msgs := `data: {"messages":[` + strings.Repeat(`{"text":"filler"},`, 2000) + `{"text":"end"}]}`
	stream := "retry: 2000\n\nevent: regions\ndata: " + big + "\n\nevent: messages\n" + msgs + "\r\n\n: heartbeat\n"
	want := []string{"retry: 2000", "", "event: regions", "data:", "", "event: messages", msgs, "", ": heartbeat"}
	for name, r := range map[string]io.Reader{
		"whole": strings.NewReader(stream),
		"bytes": iotest.OneByteReader(strings.NewReader(stream)),
		"half":  iotest.HalfReader(strings.NewReader(stream)),
	} {
		lr := newLineReader(r)
		var got []string
		keep := false
		for {
			line, long, err := lr.next(keep)
			if err != nil {
				if err != io.EOF {
					t.Fatal(err)
				}
				break
			}
			got = append(got, string(line))
			keep = string(line) == "event: messages"
			if long != nil {
				linePool.Put(long)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: got %d lines, want %d", name, len(got), len(want))
			for i := range min(len(got), len(want)) {
				if got[i] != want[i] {
					t.Errorf("%s: line %d = %.40q, want %.40q", name, i, got[i], want[i])
				}
			}
		}
	}
}

// -warm sets the idle the memory after is judged on: without an app, its
// PID or a settle it would measure nothing, so it is refused.
func TestWarmNeedsAnAppPIDAndSettle(t *testing.T) {
	for _, args := range [][]string{
		{"-warm", "-floor", "-pid", "1", "-settle", "1s"},
		{"-warm", "-url", "http://127.0.0.1:1", "-settle", "1s"},
		{"-warm", "-url", "http://127.0.0.1:1", "-pid", "1"},
	} {
		if _, _, err := parseOptions(args, io.Discard); err == nil || !strings.Contains(err.Error(), "-warm needs") {
			t.Errorf("%q: %v, want refused", args, err)
		}
	}
}
