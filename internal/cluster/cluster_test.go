package cluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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

// logWriter sends the cluster's progress lines to the test log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var client = &http.Client{Timeout: 5 * time.Second}

type state struct {
	AppRegion struct {
		Code string `json:"code"`
	} `json:"app_region"`
	Lightbulb struct {
		On bool `json:"on"`
	} `json:"lightbulb"`
}

func getState(t *testing.T, a *cluster.App) state {
	t.Helper()
	resp, err := client.Get(a.URL() + "/api/state")
	if err != nil {
		t.Fatalf("%s: %v", a.Name, err)
	}
	defer resp.Body.Close()
	var s state
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s /api/state: %s", a.Name, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatalf("%s /api/state: %v", a.Name, err)
	}
	return s
}

func checkReady(t *testing.T, a *cluster.App) {
	t.Helper()
	resp, err := client.Get(a.URL() + "/readyz")
	if err != nil {
		t.Fatalf("%s: %v", a.Name, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s /readyz: %s\n%s", a.Name, resp.Status, a.Log())
	}
}

func setLight(t *testing.T, a *cluster.App, on bool) {
	t.Helper()
	v := "off"
	if on {
		v = "on"
	}
	resp, err := client.PostForm(a.URL()+"/lightbulb", url.Values{"state": {v}})
	if err != nil {
		t.Fatalf("%s: %v", a.Name, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s POST /lightbulb: %s", a.Name, resp.Status)
	}
}

// waitLight polls a's state until the bulb is on (or off) and returns how
// long that took.
func waitLight(t *testing.T, a *cluster.App, on bool, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for getState(t, a).Lightbulb.On != on {
		if time.Since(start) > timeout {
			t.Fatalf("%s: lightbulb not on=%v within %v", a.Name, on, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func gone(pid int) bool { return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) }

// processesIn lists the live processes whose working directory is in dir:
// every redis-server and app a cluster in dir starts. Redis rewrites its
// command line, so that cannot tell.
func processesIn(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Logf("no /proc, cannot list processes: %v", err)
		return nil
	}
	var found []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if err != nil || (cwd != dir && !strings.HasPrefix(cwd, dir+"/")) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		found = append(found, fmt.Sprintf("%d %s", pid, strings.ReplaceAll(string(cmdline), "\x00", " ")))
	}
	return found
}

// startCluster starts cfg in a dir of its own with the test binary and the
// test's log, and stops it at the end of the test, checking that nothing it
// started is left running.
func startCluster(t *testing.T, cfg cluster.Config) *cluster.Cluster {
	t.Helper()
	cfg.Binary, cfg.Dir, cfg.Log = cluster.TestBinary(t), t.TempDir(), logWriter{t}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := cluster.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Registered after TempDir's removal, so it runs first.
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
		if left := processesIn(t, cfg.Dir); len(left) > 0 {
			t.Errorf("still running after Stop:\n%s", strings.Join(left, "\n"))
		}
	})
	return c
}

func TestCluster(t *testing.T) {
	redisnode.Require(t)
	t.Parallel()
	bin := cluster.TestBinary(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()

	start := time.Now()
	c, err := cluster.Start(ctx, cluster.Config{
		Binary:    bin,
		Regions:   []string{"ams", "syd"},
		Instances: map[string]int{"ams": 2},
		Dir:       dir,
		AppArgs:   []string{"-coalesce", "50ms"},
		Log:       logWriter{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Registered after TempDir's removal, so it runs first.
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	t.Logf("cluster ready in %v", time.Since(start))

	apps := c.Apps()
	var names []string
	for _, a := range apps {
		names = append(names, a.Region+"/"+a.Name)
	}
	if got := strings.Join(names, " "); got != "ams/ams-1 ams/ams-2 syd/syd-1" {
		t.Fatalf("apps = %s", got)
	}
	for _, a := range apps {
		checkReady(t, a)
		if got := getState(t, a).AppRegion.Code; got != a.Region {
			t.Errorf("%s: app_region.code = %q, want %q", a.Name, got, a.Region)
		}
	}
	ams, syd := c.Region("ams").Apps, c.Region("syd").Apps

	// A write in ams reaches syd through the primary and syd's replica.
	setLight(t, ams[0], true)
	d := waitLight(t, syd[0], true, 5*time.Second)
	t.Logf("syd saw ams's flip after %v", d)

	// Latency on syd's links delays what syd sees by at least that much;
	// ams's own links stay fast.
	const lat = 150 * time.Millisecond
	c.SetLatency(lat)
	// Timed from before the POST: the write cannot reach the primary
	// earlier, nor syd's replica less than lat after that.
	before := time.Now()
	setLight(t, ams[1], false)
	waitLight(t, ams[0], false, 5*time.Second)
	dAms := time.Since(before)
	waitLight(t, syd[0], false, 5*time.Second)
	dSyd := time.Since(before)
	t.Logf("with %v on cross-region links: ams-1 saw ams-2's flip after %v, syd-1 after %v", lat, dAms, dSyd)
	if dSyd < lat {
		t.Errorf("syd saw the flip %v after it was written, over a %v link", dSyd, lat)
	}
	c.SetLatency(0)

	// A crashed instance comes back on a new port and gets ready again.
	a := syd[0]
	pid := a.PID()
	if err := a.Kill(); err != nil {
		t.Fatal(err)
	}
	if !gone(pid) || a.PID() != 0 {
		t.Fatalf("pid %d still there after Kill (PID() = %d)", pid, a.PID())
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err == nil {
		t.Error("second Start of a running app succeeded")
	}
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	if err := a.WaitReady(rctx); err != nil {
		t.Fatalf("%v\n%s", err, a.Log())
	}
	checkReady(t, a)
	if s := getState(t, a); s.AppRegion.Code != "syd" || s.Lightbulb.On {
		t.Errorf("restarted syd-1: state %+v", s)
	}
	if a.PID() == pid || a.PID() == 0 {
		t.Errorf("PID %d after restart, was %d", a.PID(), pid)
	}

	pids := []int{c.Primary.PID()}
	for _, r := range c.Regions {
		pids = append(pids, r.Replica.PID())
	}
	for _, a := range c.Apps() {
		pids = append(pids, a.PID())
	}
	start = time.Now()
	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("stopped in %v", time.Since(start))
	for _, pid := range pids {
		if pid == 0 || !gone(pid) {
			t.Errorf("pid %d: not running before Stop, or still running after it (all: %v)", pid, pids)
		}
	}
	if left := processesIn(t, dir); len(left) > 0 {
		t.Errorf("still running after Stop:\n%s", strings.Join(left, "\n"))
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestStartFailureStopsEverything(t *testing.T) {
	redisnode.Require(t)
	t.Parallel()
	bin := cluster.TestBinary(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Config{
		Binary:  bin,
		Regions: []string{"ams", "iad"},
		Dir:     dir,
		AppArgs: []string{"-no-such-flag"},
	})
	if err == nil {
		c.Stop()
		t.Fatal("Start succeeded with a bad app flag")
	}
	t.Logf("Start error (as expected):\n%v", err)
	// The error quotes the app's own complaint.
	if !strings.Contains(err.Error(), "flag provided but not defined: -no-such-flag") {
		t.Errorf("error lacks the app's log:\n%v", err)
	}
	if left := processesIn(t, dir); len(left) > 0 {
		t.Errorf("still running after a failed Start:\n%s", strings.Join(left, "\n"))
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "app")
	if err := os.WriteFile(bin, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  cluster.Config
		want string
	}{
		{"no binary", cluster.Config{Regions: []string{"ams"}}, "Binary is required"},
		{"missing binary", cluster.Config{Binary: bin + ".missing", Regions: []string{"ams"}}, "not a file"},
		{"no regions", cluster.Config{Binary: bin}, "Regions is empty"},
		{"bad region", cluster.Config{Binary: bin, Regions: []string{"AMS"}}, "lower-case"},
		{"twice", cluster.Config{Binary: bin, Regions: []string{"ams", "ams"}}, "given twice"},
		{"unknown instances", cluster.Config{Binary: bin, Regions: []string{"ams"}, Instances: map[string]int{"iad": 2}}, "not one of the regions"},
		{"zero instances", cluster.Config{Binary: bin, Regions: []string{"ams"}, Instances: map[string]int{"ams": 0}}, "at least 1"},
		{"negative latency", cluster.Config{Binary: bin, Regions: []string{"ams"}, Latency: -time.Second}, "negative latency"},
		{"unknown topology", cluster.Config{Binary: bin, Regions: []string{"ams"}, Topology: "etcd"}, "topology"},
		{"delayed direct links", cluster.Config{Binary: bin, Regions: []string{"ams"}, Direct: true, Latency: time.Second}, "cannot be delayed"},
	} {
		c, err := cluster.Start(context.Background(), tc.cfg)
		if err == nil {
			c.Stop()
			t.Errorf("%s: Start succeeded", tc.name)
		} else if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q, want it to mention %q", tc.name, err, tc.want)
		}
	}
}

// With direct links a region's replica replicates from the primary itself
// and its apps write there; changes still reach every region.
func TestDirectLinks(t *testing.T) {
	redisnode.Require(t)
	c := startCluster(t, cluster.Config{Regions: []string{"ams", "syd"}, Direct: true})
	syd := c.Region("syd")
	if syd.ReplLink != nil || syd.WriteLink != nil || syd.ReplAddr(c.Primary) != c.Primary.Addr() {
		t.Fatalf("links not direct: replicates via %s", syd.ReplAddr(c.Primary))
	}
	setLight(t, syd.Apps[0], true)
	waitLight(t, c.Region("ams").Apps[0], true, 5*time.Second)
	setLight(t, c.Region("ams").Apps[0], false)
	waitLight(t, syd.Apps[0], false, 5*time.Second)
}
