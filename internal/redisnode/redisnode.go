// Package redisnode runs real redis-server processes on loopback, as
// primaries or replicas, and KeyDB multi-master nodes, for tests and the
// local-cluster command.
package redisnode

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// readyTimeout bounds each wait in Start: for PONG, and for a replica's
	// link to its primary.
	readyTimeout = 10 * time.Second
	// stopTimeout is how long Stop lets redis shut down before SIGKILL. It
	// must exceed the shutdown-timeout in the config, during which a
	// primary waits for lagging replicas to catch up.
	stopTimeout = 10 * time.Second
	// portAttempts is how often Start picks a new free port when redis
	// cannot bind the previous one (another process took it meanwhile).
	portAttempts = 5
	// doTimeout bounds one Do round trip.
	doTimeout = 15 * time.Second
)

// Options configure one redis-server.
type Options struct {
	Dir         string   // working dir for this node (config, data, logs); required
	ReplicaOf   string   // "host:port" to replicate from; "" = primary
	Password    string   // requirepass and masterauth when set
	ExtraConfig []string // extra config lines, e.g. "notify-keyspace-events Kgx"
	Port        int      // 0 = pick a free loopback port
	// KeyDB runs keydb-server (see KeyDBServerPath) as an active-replica,
	// multi-master node. It starts alone; join it to its peers with
	// REPLICAOF once they are up (again after every restart, which
	// forgets them). ReplicaOf must be empty.
	KeyDB bool
}

// Node is one redis-server process, restartable on the same port and dir.
type Node struct {
	opts     Options // Dir made absolute
	bin      string
	port     int
	confPath string
	logPath  string
	errPath  string // stdout and stderr, for failures before the logfile is open

	mu     sync.Mutex
	cmd    *exec.Cmd     // nil when not running
	exited chan struct{} // closed once cmd has been reaped
}

// RedisServerPath finds the redis-server binary.
func RedisServerPath() (string, error) {
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	const debian = "/usr/bin/redis-server"
	if fi, err := os.Stat(debian); err == nil && !fi.IsDir() {
		return debian, nil
	}
	return "", errors.New("redis-server not found in PATH or at /usr/bin/redis-server; " +
		"run the test suite as the README says (./scripts/test.sh), which installs it")
}

// Start writes a config into opts.Dir and starts redis-server on
// 127.0.0.1. It returns once the server answers PING and, for a replica,
// once its link to the primary is up. On failure the error carries the
// tail of the server's log.
func Start(opts Options) (*Node, error) {
	if opts.Dir == "" {
		return nil, errors.New("redisnode: Options.Dir is required")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	opts.Dir = dir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if opts.ReplicaOf != "" {
		if opts.KeyDB {
			return nil, errors.New("redisnode: a KeyDB node takes its peers by REPLICAOF, not Options.ReplicaOf")
		}
		if _, _, err := net.SplitHostPort(opts.ReplicaOf); err != nil {
			return nil, fmt.Errorf("redisnode: ReplicaOf %q: %v", opts.ReplicaOf, err)
		}
	}
	find := RedisServerPath
	if opts.KeyDB {
		find = KeyDBServerPath
	}
	bin, err := find()
	if err != nil {
		return nil, err
	}
	n := &Node{
		opts:     opts,
		bin:      bin,
		confPath: filepath.Join(dir, "redis.conf"),
		logPath:  filepath.Join(dir, "redis.log"),
		errPath:  filepath.Join(dir, "redis.stderr.log"),
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if opts.Port != 0 {
		n.port = opts.Port
		return n, n.launch()
	}
	// The free port is only reserved until we close the probe listener, so
	// another process may take it before redis binds; then try another.
	for attempt := 1; ; attempt++ {
		if n.port, err = freePort(); err != nil {
			return nil, err
		}
		err = n.launch()
		if err == nil {
			return n, nil
		}
		if !errors.Is(err, errAddrInUse) || attempt == portAttempts {
			return nil, err
		}
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

var errAddrInUse = errors.New("address already in use")

// launch starts the process on n.port and waits until it is ready. On
// failure nothing is left running. Called with n.mu held.
func (n *Node) launch() error {
	if err := os.WriteFile(n.confPath, []byte(n.config()), 0o600); err != nil {
		return err
	}
	// Only log output from this attempt tells why it failed.
	logOff := fileSize(n.logPath)
	errOff := fileSize(n.errPath)

	out, err := os.OpenFile(n.errPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(n.bin, n.confPath)
	cmd.Dir = n.opts.Dir
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = sysProcAttr()
	err = cmd.Start()
	out.Close() // the child has its own copy
	if err != nil {
		return fmt.Errorf("redisnode: start %s: %v", n.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	n.cmd, n.exited = cmd, exited

	if err := n.waitReady(); err != nil {
		n.killLocked()
		tail := n.tail(logOff, errOff)
		if strings.Contains(tail, "Address already in use") {
			err = fmt.Errorf("%w: %v", errAddrInUse, err)
		}
		return fmt.Errorf("redisnode: %s on port %d: %w\n--- log tail (%s) ---\n%s",
			n.role(), n.port, err, n.opts.Dir, tail)
	}
	return nil
}

func (n *Node) role() string {
	if n.opts.KeyDB {
		return "keydb node"
	}
	if n.opts.ReplicaOf != "" {
		return "replica of " + n.opts.ReplicaOf
	}
	return "primary"
}

func (n *Node) waitReady() error {
	if err := n.poll("PING", func() (bool, error) {
		reply, err := n.Do("PING")
		return err == nil && reply == "PONG", err
	}); err != nil {
		return err
	}
	// PING is answered while the AOF still loads, and most commands
	// (REPLICAOF among them) are refused with LOADING until it is done.
	if err := n.poll("loading:0", func() (bool, error) {
		info, err := n.Do("INFO", "persistence")
		return err == nil && strings.Contains(info, "loading:0"), err
	}); err != nil {
		return err
	}
	if n.opts.ReplicaOf == "" {
		return nil
	}
	return n.poll("master_link_status:up", func() (bool, error) {
		info, err := n.Do("INFO", "replication")
		return err == nil && strings.Contains(info, "master_link_status:up"), err
	})
}

// poll calls check until it succeeds, the process exits or readyTimeout
// passes; the last error from check explains a timeout.
func (n *Node) poll(what string, check func() (bool, error)) error {
	deadline := time.Now().Add(readyTimeout)
	var last error
	for {
		ok, err := check()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-n.exited:
			return fmt.Errorf("exited (%v) while waiting for %s", n.cmd.ProcessState, what)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no %s within %v (last error: %v)", what, readyTimeout, last)
		}
	}
}

func (n *Node) config() string {
	var b strings.Builder
	line := func(args ...string) {
		b.WriteString(strings.Join(args, " "))
		b.WriteByte('\n')
	}
	line("bind", "127.0.0.1")
	line("port", strconv.Itoa(n.port))
	line("daemonize", "no")
	line("dir", quote(n.opts.Dir))
	line("logfile", quote(n.logPath))
	// AOF rather than RDB snapshots, so Restart keeps every acknowledged
	// write (up to a second with everysec).
	line("appendonly", "yes")
	line("appendfsync", "everysec")
	line("save", `""`)
	// Stream the full sync straight to the replica, without the default
	// 5 s wait for more replicas to batch up, so replicas attach fast.
	line("repl-diskless-sync", "yes")
	line("repl-diskless-sync-delay", "0")
	line("replica-serve-stale-data", "yes")
	if n.opts.KeyDB {
		line("active-replica", "yes")
		line("multi-master", "yes")
	} else {
		// Redis 7 defaults to 10 s, which would race Stop's SIGKILL
		// fallback. KeyDB 6.3 has no such setting.
		line("shutdown-timeout", "5")
	}
	if n.opts.ReplicaOf != "" {
		host, port, _ := net.SplitHostPort(n.opts.ReplicaOf)
		line("replicaof", host, port)
	}
	if n.opts.Password != "" {
		line("requirepass", quote(n.opts.Password))
		line("masterauth", quote(n.opts.Password))
	}
	for _, l := range n.opts.ExtraConfig {
		line(l)
	}
	return b.String()
}

// quote renders s as a double-quoted redis config argument.
func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`)
	return `"` + r.Replace(s) + `"`
}

// Addr is the node's "127.0.0.1:port".
func (n *Node) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.port)) }

// URL is a redis:// URL for database 0, with the password when set.
func (n *Node) URL() string {
	if n.opts.Password != "" {
		return "redis://:" + urlEscape(n.opts.Password) + "@" + n.Addr() + "/0"
	}
	return "redis://" + n.Addr() + "/0"
}

func urlEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// PID is the process id of the running server, or 0 when it is stopped.
func (n *Node) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// Stop shuts the server down gracefully with SIGTERM (redis then flushes
// its AOF), waits for it to exit, and falls back to SIGKILL after
// stopTimeout. Stopping a stopped node does nothing.
func (n *Node) Stop() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stopLocked()
}

func (n *Node) stopLocked() error {
	if n.cmd == nil {
		return nil
	}
	select {
	case <-n.exited:
		n.cmd = nil
		return nil
	default:
	}
	pid := n.cmd.Process.Pid
	deadline := time.After(stopTimeout)
	// Redis ignores a SIGTERM that arrives while it writes its initial AOF
	// (e.g. a replica right after a full sync: "Writing initial AOF, can't
	// exit"), so repeat it. A repeated SIGTERM is harmless; only a second
	// SIGINT would make redis skip its shutdown work.
	resend := time.NewTicker(250 * time.Millisecond)
	defer resend.Stop()
	for {
		if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("redisnode: SIGTERM %d: %v", pid, err)
		}
		select {
		case <-n.exited:
			n.cmd = nil
			return nil
		case <-resend.C:
		case <-deadline:
			n.killLocked()
			return fmt.Errorf("redisnode: pid %d did not exit within %v of SIGTERM; killed", pid, stopTimeout)
		}
	}
}

// Kill ends the server with SIGKILL, without letting it flush anything,
// and waits until it is gone.
func (n *Node) Kill() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.killLocked()
	return nil
}

func (n *Node) killLocked() {
	if n.cmd == nil {
		return
	}
	select {
	case <-n.exited:
	default:
		// The whole group: it is redis's own (Setpgid) and also holds any
		// fork child saving or rewriting the AOF. The leader is not yet
		// reaped, so the group id cannot have been reused.
		if err := syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL); err != nil {
			n.cmd.Process.Kill()
		}
		<-n.exited
	}
	n.cmd = nil
}

// Restart stops the server gracefully and starts it again on the same port
// and dir, waiting until it is ready. Data survives through the AOF.
func (n *Node) Restart() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.stopLocked(); err != nil {
		return err
	}
	return n.relaunchLocked()
}

// Crash kills the server with SIGKILL, as a crashed machine's process
// would die, and starts it again on the same port and dir. With keepData
// it comes back from its AOF, which redis writes before it answers a
// write, so every acknowledged write survives; without, its data files
// are removed first and it comes back empty (a replaced disk).
func (n *Node) Crash(keepData bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.killLocked()
	if !keepData {
		if err := n.removeData(); err != nil {
			return err
		}
	}
	return n.relaunchLocked()
}

// removeData deletes everything in the node's dir but its config and logs:
// the AOF, RDB snapshots and their temp files. Called with n stopped.
func (n *Node) removeData() error {
	entries, err := os.ReadDir(n.opts.Dir)
	if err != nil {
		return err
	}
	keep := map[string]bool{
		filepath.Base(n.confPath): true,
		filepath.Base(n.logPath):  true,
		filepath.Base(n.errPath):  true,
	}
	for _, e := range entries {
		if keep[e.Name()] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(n.opts.Dir, e.Name())); err != nil {
			return fmt.Errorf("redisnode: removing data: %w", err)
		}
	}
	return nil
}

// relaunchLocked starts a stopped node again. Called with n.mu held.
func (n *Node) relaunchLocked() error {
	var err error
	// The port is ours in practice, but a client's ephemeral port could
	// land on it while the server is down; give that a moment to clear.
	for range 3 {
		if err = n.launch(); err == nil || !errors.Is(err, errAddrInUse) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
	return err
}

// Do sends one command over a fresh connection, authenticating first when
// the node has a password, and returns the reply as text: bulk and simple
// strings as-is, integers in decimal, arrays newline-joined, nil as "".
// An error reply is returned as a RedisError. Meant for tests and
// debugging, not for traffic.
func (n *Node) Do(args ...string) (string, error) {
	if len(args) == 0 {
		return "", errors.New("redisnode: Do needs a command")
	}
	c, err := net.DialTimeout("tcp", n.Addr(), 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(doTimeout))
	r, w := bufio.NewReader(c), bufio.NewWriter(c)
	if n.opts.Password != "" {
		if err := writeCommand(w, []string{"AUTH", n.opts.Password}); err != nil {
			return "", err
		}
		if _, err := readReply(r); err != nil {
			return "", fmt.Errorf("AUTH: %w", err)
		}
	}
	if err := writeCommand(w, args); err != nil {
		return "", err
	}
	return readReply(r)
}

// Commands is how many commands the node has run since it started (the
// calls of INFO commandstats; the INFO that reads them is not yet counted).
func (n *Node) Commands() (int, error) {
	info, err := n.Do("INFO", "commandstats")
	if err != nil {
		return 0, err
	}
	total := 0
	for line := range strings.SplitSeq(info, "\n") {
		if _, stats, ok := strings.Cut(line, ":calls="); ok {
			calls, _, _ := strings.Cut(stats, ",")
			c, _ := strconv.Atoi(calls)
			total += c
		}
	}
	return total, nil
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// tail returns the last lines the server wrote since the given offsets of
// its logfile and its stdout/stderr.
func (n *Node) tail(logOff, errOff int64) string {
	var b strings.Builder
	for _, f := range []struct {
		path string
		off  int64
	}{{n.logPath, logOff}, {n.errPath, errOff}} {
		data := readFrom(f.path, f.off)
		if len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > 25 {
			lines = lines[len(lines)-25:]
		}
		fmt.Fprintf(&b, "%s:\n%s\n", filepath.Base(f.path), strings.Join(lines, "\n"))
	}
	if b.Len() == 0 {
		return "(no output)"
	}
	return b.String()
}

func readFrom(path string, off int64) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	const max = 64 << 10
	if size := fileSize(path); size-off > max {
		off = size - max
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil
	}
	data, _ := io.ReadAll(f)
	return data
}
