package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	// listenTimeout bounds how long Start waits for the listening line.
	listenTimeout = 10 * time.Second
	// termTimeout is how long Term waits before SIGKILL. It exceeds the
	// app's default -shutdown-timeout (5 s) plus its store's close (2 s).
	termTimeout = 10 * time.Second
	// maxOutput is how much of an app's output Log keeps in memory; the
	// log file has all of it.
	maxOutput = 1 << 20
	// logTailLines is how much of an app's log failure messages quote.
	logTailLines = 40
)

// App is one app instance: a separate OS process of the app binary. Its
// methods are safe for concurrent use.
type App struct {
	Name   string // its FLY_ALLOC_ID, e.g. "ams-1"
	Region string // its FLY_REGION

	bin     string
	args    []string
	env     []string
	logPath string
	logf    func(format string, args ...any)
	out     output
	client  *http.Client

	// life serialises Start, Term and Kill, so a slow start or stop does
	// not block PID and URL, which take only mu.
	life sync.Mutex
	mu   sync.Mutex
	url  string
	cur  *proc // the latest run; nil when none or it was stopped on purpose
}

// proc is one run of an app process.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process is reaped and its output copied
	err  error         // cmd.Wait's result, set before done is closed
	// expected is set before we end the process, so its exit is not
	// reported as a crash.
	expected atomic.Bool
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// URL is the app's base URL ("http://127.0.0.1:PORT") from its latest
// start. It stays set after the app stops, and changes on every Start.
func (a *App) URL() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.url
}

// PID is the process id of the running app, or 0 when it is not running.
func (a *App) PID() int {
	p := a.running()
	if p == nil || p.exited() {
		return 0
	}
	return p.cmd.Process.Pid
}

// Log is the app's stdout and stderr so far (the last MiB), across
// restarts, for failure messages.
func (a *App) Log() string { return a.out.String() }

// logTail is the end of Log, short enough to quote in an error.
func (a *App) logTail() string {
	lines := strings.Split(strings.TrimRight(a.Log(), "\n"), "\n")
	if len(lines) > logTailLines {
		lines = lines[len(lines)-logTailLines:]
	}
	return fmt.Sprintf("--- %s log (%s) ---\n%s", a.Name, a.logPath, strings.Join(lines, "\n"))
}

// Start starts the app process (again, after Term or Kill) and returns once
// it listens, on a new port. It does not wait for /readyz: see WaitReady.
func (a *App) Start() error {
	a.life.Lock()
	defer a.life.Unlock()
	a.mu.Lock()
	cur := a.cur
	a.mu.Unlock()
	if cur != nil && !cur.exited() {
		return fmt.Errorf("cluster: %s is already running (pid %d)", a.Name, cur.cmd.Process.Pid)
	}
	return a.launch()
}

// launch starts a process and waits for its listening line. On failure
// nothing is left running. Called with a.life held.
func (a *App) launch() error {
	if err := os.MkdirAll(filepath.Dir(a.logPath), 0o755); err != nil {
		return fmt.Errorf("cluster: %s: %w", a.Name, err)
	}
	f, err := os.OpenFile(a.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("cluster: %s: %w", a.Name, err)
	}
	a.out.setFile(f)
	found := make(chan string, 1)
	cmd := exec.Command(a.bin, append([]string{"-addr", "127.0.0.1:0"}, a.args...)...)
	cmd.Env = a.env
	// Its region's dir, so anything it writes lands in the cluster's Dir
	// and its cwd tells whose process it is.
	cmd.Dir = filepath.Dir(a.logPath)
	cmd.Stdout = &listenWatcher{out: &a.out, found: found}
	cmd.Stderr = &a.out
	cmd.SysProcAttr = sysProcAttr()
	// Wait also waits for the output pipes; bound that in case something
	// else inherited them.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		a.out.setFile(nil)
		return fmt.Errorf("cluster: start %s: %v", a.Name, err)
	}
	fmt.Fprintf(&a.out, "--- cluster: started %s, pid %d ---\n", a.Name, cmd.Process.Pid)
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		a.out.setFile(nil)
		if !p.expected.Load() {
			a.logf("%s (pid %d) exited unexpectedly: %v", a.Name, cmd.Process.Pid, p.err)
		}
		close(p.done)
	}()
	a.mu.Lock()
	a.cur = p
	a.mu.Unlock()

	timer := time.NewTimer(listenTimeout)
	defer timer.Stop()
	select {
	case u := <-found:
		a.mu.Lock()
		a.url = u
		a.mu.Unlock()
		return nil
	case <-p.done:
		p.expected.Store(true) // reported here, not again by Term
		a.forget(p)
		return fmt.Errorf("cluster: %s exited before listening (%v)\n%s", a.Name, p.err, a.logTail())
	case <-timer.C:
		p.expected.Store(true)
		_ = p.cmd.Process.Kill()
		<-p.done
		a.forget(p)
		return fmt.Errorf("cluster: %s printed no listening line within %v; killed\n%s", a.Name, listenTimeout, a.logTail())
	}
}

func (a *App) forget(p *proc) {
	a.mu.Lock()
	if a.cur == p {
		a.cur = nil
	}
	a.mu.Unlock()
}

// running is the app's current process, or nil.
func (a *App) running() *proc {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cur
}

// Term stops the app gracefully with SIGTERM, waits for it to exit (SIGKILL
// after 10 s) and returns its exit error. If it had already exited by
// itself, Term returns that exit error once. Terminating a stopped app does
// nothing.
func (a *App) Term() error {
	a.life.Lock()
	defer a.life.Unlock()
	p := a.running()
	if p == nil {
		return nil
	}
	defer a.forget(p)
	pid := p.cmd.Process.Pid
	if p.exited() {
		if p.err != nil {
			return fmt.Errorf("cluster: %s (pid %d) had exited: %w\n%s", a.Name, pid, p.err, a.logTail())
		}
		return nil
	}
	p.expected.Store(true)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("cluster: SIGTERM %s (pid %d): %v", a.Name, pid, err)
	}
	timer := time.NewTimer(termTimeout)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("cluster: %s (pid %d) did not exit within %v of SIGTERM; killed", a.Name, pid, termTimeout)
	}
	if p.err != nil {
		return fmt.Errorf("cluster: %s (pid %d) exited: %w\n%s", a.Name, pid, p.err, a.logTail())
	}
	return nil
}

// Kill ends the app with SIGKILL, as a crash would (its tabs linger until
// their TTL), and waits until it is gone.
func (a *App) Kill() error {
	a.life.Lock()
	defer a.life.Unlock()
	p := a.running()
	if p == nil {
		return nil
	}
	defer a.forget(p)
	p.expected.Store(true)
	// The app starts no children, so its own process is all there is; the
	// pidfd-backed Kill cannot hit a reused pid.
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("cluster: SIGKILL %s: %v", a.Name, err)
	}
	<-p.done
	return nil
}

// WaitReady polls the app's /readyz until it answers 200, the app exits or
// ctx ends.
func (a *App) WaitReady(ctx context.Context) error {
	var last error
	for {
		if a.PID() == 0 {
			return fmt.Errorf("cluster: %s is not running", a.Name)
		}
		if last = a.ready(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: %s not ready: %v (%w)", a.Name, last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ready asks /readyz once.
func (a *App) ready(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.URL()+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz %d: %s", resp.StatusCode, bytes.TrimSpace(body))
	}
	return nil
}

// output keeps the tail of an app's output in memory and copies all of it
// to the current run's log file. Stdout and stderr are copied by separate
// goroutines, hence the lock.
type output struct {
	mu   sync.Mutex
	buf  []byte
	file *os.File
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf = append(o.buf, p...)
	// Trim in big steps so appending stays amortised O(1).
	if len(o.buf) > 2*maxOutput {
		o.buf = append([]byte(nil), o.buf[len(o.buf)-maxOutput:]...)
	}
	if o.file != nil {
		// A failing log file must not fail the app's output pipe; the
		// memory copy still has it.
		_, _ = o.file.Write(p)
	}
	return len(p), nil
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return string(o.buf)
}

// setFile closes the previous log file, if any, and writes to f from now on.
func (o *output) setFile(f *os.File) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.file != nil {
		o.file.Close()
	}
	o.file = f
}

// listenWatcher passes stdout on and reports the URL of the app's
// "listening on http://ADDR (...)" line. Only exec's copying goroutine
// writes to it.
type listenWatcher struct {
	out   io.Writer
	line  []byte
	found chan<- string // nil once reported
}

func (w *listenWatcher) Write(p []byte) (int, error) {
	_, _ = w.out.Write(p)
	if w.found == nil {
		return len(p), nil
	}
	w.line = append(w.line, p...)
	for {
		i := bytes.IndexByte(w.line, '\n')
		if i < 0 {
			break
		}
		if u, ok := parseListening(string(w.line[:i])); ok {
			w.found <- u
			w.found, w.line = nil, nil
			break
		}
		w.line = w.line[i+1:]
	}
	if len(w.line) > 64<<10 {
		w.line = nil // not the short line we are after
	}
	return len(p), nil
}

// parseListening extracts the URL from the app's listening line.
func parseListening(line string) (string, bool) {
	_, after, ok := strings.Cut(line, "listening on ")
	if !ok {
		return "", false
	}
	u, _, _ := strings.Cut(after, " ")
	if !strings.HasPrefix(u, "http://") {
		return "", false
	}
	return u, true
}
