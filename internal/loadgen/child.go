package loadgen

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"globalpresence/internal/floor"
)

// The hidden first arguments that turn the binary into one of its own
// children. They are not flags of the public flag set, so -h never shows them.
const (
	WorkerArg = "-worker"
	FloorArg  = "-serve-floor"
)

// Child runs the binary as a worker or floor child when args[0] asks for it;
// ok is false otherwise.
func Child(args []string, stdin io.Reader, stdout, stderr io.Writer) (code int, ok bool) {
	if len(args) == 0 {
		return 0, false
	}
	switch args[0] {
	case WorkerArg:
		return workerMain(stdin, stdout, stderr), true
	case FloorArg:
		return floorMain(stdin, stdout, stderr), true
	}
	return 0, false
}

type command struct {
	Cmd string `json:"cmd"` // start, end, stop
}

// workerMain: the config is the first JSON value on stdin, commands follow;
// reports go to stdout as JSON lines. Stdin closing means the parent is gone:
// exit at once, and the kernel closes the sockets.
func workerMain(stdin io.Reader, stdout, stderr io.Writer) int {
	dec := json.NewDecoder(stdin)
	var cfg workerConfig
	if err := dec.Decode(&cfg); err != nil {
		fmt.Fprintln(stderr, "loadgen worker: reading config:", err)
		return 2
	}
	time.AfterFunc(cfg.MaxLife, func() {
		fmt.Fprintln(stderr, "loadgen worker: time limit reached; exiting")
		os.Exit(3)
	})
	cmds := make(chan string)
	go func() {
		for {
			var c command
			if err := dec.Decode(&c); err != nil {
				os.Exit(4)
			}
			cmds <- c.Cmd
		}
	}()

	var outMu sync.Mutex
	enc := json.NewEncoder(stdout)
	send := func(r report) {
		outMu.Lock()
		defer outMu.Unlock()
		if err := enc.Encode(r); err != nil {
			os.Exit(5) // the parent stopped reading
		}
	}

	w := newWorker(cfg)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				send(w.report("progress"))
			}
		}
	}()
	w.ramp(context.Background())
	close(done)
	send(w.report("ready"))
	for c := range cmds {
		switch c {
		case "start":
			w.start()
		case "end":
			w.end()
		case "stop":
			w.stop()
			send(w.report("result"))
			return 0
		}
	}
	return 0
}

// floorMain serves the floor on a fresh loopback port, announces it on
// stdout, and lives until stdin closes (or an hour, whatever happens).
func floorMain(stdin io.Reader, stdout, stderr io.Writer) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(stderr, "loadgen floor:", err)
		return 2
	}
	fmt.Fprintf(stdout, "floor: listening on http://%s\n", ln.Addr())
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		ln.Close()
	}()
	time.AfterFunc(time.Hour, func() { os.Exit(3) })
	if err := floor.Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
		fmt.Fprintln(stderr, "loadgen floor:", err)
		return 1
	}
	return 0
}

// handle is the parent's side of one worker, in this process or another.
type handle interface {
	ramp(ctx context.Context) (report, error)
	progress() (open, failed int64)
	command(cmd string) error // start or end
	finish(ctx context.Context) (report, error)
	close()
}

// local is a worker in the parent's own process (-workers=inproc).
type local struct {
	w       *worker
	stopped atomic.Bool
}

func (l *local) ramp(ctx context.Context) (report, error) {
	l.w.ramp(ctx)
	return l.w.report("ready"), ctx.Err()
}

func (l *local) progress() (int64, int64) { return l.w.open.Load(), l.w.failed.Load() }

func (l *local) command(cmd string) error {
	switch cmd {
	case "start":
		l.w.start()
	case "end":
		l.w.end()
	}
	return nil
}

func (l *local) finish(context.Context) (report, error) {
	l.close()
	return l.w.report("result"), nil
}

func (l *local) close() {
	if !l.stopped.Swap(true) {
		l.w.stop()
	}
}

// remote is a worker process: commands go to its stdin, reports come back
// as JSON lines on its stdout.
type remote struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	enc     *json.Encoder
	reports chan report // ready and result
	open    atomic.Int64
	failed  atomic.Int64
	exited  chan struct{}
	once    sync.Once
}

func startRemote(exe string, cfg workerConfig, stderr io.Writer) (*remote, error) {
	cmd, stdin, stdout, err := startChild(exe, WorkerArg, stderr)
	if err != nil {
		return nil, fmt.Errorf("starting a worker process: %w", err)
	}
	r := &remote{cmd: cmd, stdin: stdin, enc: json.NewEncoder(stdin), reports: make(chan report, 2), exited: make(chan struct{})}
	read := make(chan struct{})
	go func() {
		defer close(read)
		defer close(r.reports)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 64<<20) // a result carries a count per event
		for sc.Scan() {
			var rep report
			if err := json.Unmarshal(sc.Bytes(), &rep); err != nil {
				continue
			}
			r.open.Store(rep.Open)
			r.failed.Store(rep.Failed)
			if rep.Type != "progress" {
				r.reports <- rep
			}
		}
	}()
	go func() {
		<-read // Wait closes stdout: only after everything was read
		_ = cmd.Wait()
		close(r.exited)
	}()
	if err := r.enc.Encode(cfg); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func (r *remote) next(ctx context.Context, typ string) (report, error) {
	select {
	case rep, ok := <-r.reports:
		if !ok {
			return report{}, fmt.Errorf("worker process %d ended early", r.cmd.Process.Pid)
		}
		if rep.Type != typ {
			return report{}, fmt.Errorf("worker process %d: got %q, want %q", r.cmd.Process.Pid, rep.Type, typ)
		}
		return rep, nil
	case <-ctx.Done():
		return report{}, ctx.Err()
	}
}

func (r *remote) ramp(ctx context.Context) (report, error) { return r.next(ctx, "ready") }

func (r *remote) progress() (int64, int64) { return r.open.Load(), r.failed.Load() }

func (r *remote) command(cmd string) error { return r.enc.Encode(command{Cmd: cmd}) }

func (r *remote) finish(ctx context.Context) (report, error) {
	if err := r.command("stop"); err != nil {
		return report{}, err
	}
	rep, err := r.next(ctx, "result")
	r.close()
	return rep, err
}

// close ends the worker: stdin closing makes it exit; if it has not within
// a few seconds it is killed, by its own PID.
func (r *remote) close() {
	r.once.Do(func() {
		r.stdin.Close()
		select {
		case <-r.exited:
		case <-time.After(5 * time.Second):
			_ = r.cmd.Process.Kill()
			<-r.exited
		}
	})
}

// floorProc is the floor server in a child process, so its RSS is its own
// and so is its file limit.
type floorProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	url    string
	exited chan struct{}
}

func startFloor(ctx context.Context, exe string, stderr io.Writer) (*floorProc, error) {
	cmd, stdin, stdout, err := startChild(exe, FloorArg, stderr)
	if err != nil {
		return nil, fmt.Errorf("starting the floor process: %w", err)
	}
	f := &floorProc{cmd: cmd, stdin: stdin, exited: make(chan struct{})}
	lines := make(chan string, 1)
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		<-read
		_ = cmd.Wait()
		close(f.exited)
	}()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	select {
	case line := <-lines:
		if u, ok := strings.CutPrefix(line, "floor: listening on "); ok {
			f.url = u
			return f, nil
		}
		f.close()
		return nil, fmt.Errorf("the floor process said %q", line)
	case <-ctx.Done():
		f.close()
		return nil, errors.New("the floor process did not start")
	}
}

func (f *floorProc) pid() int { return f.cmd.Process.Pid }

func (f *floorProc) close() {
	f.stdin.Close()
	select {
	case <-f.exited:
	case <-time.After(5 * time.Second):
		_ = f.cmd.Process.Kill()
		<-f.exited
	}
}

// startChild re-runs this binary in a child role, talking over its stdin
// and stdout; the child dies with its parent.
func startChild(exe, role string, stderr io.Writer) (*exec.Cmd, io.WriteCloser, io.ReadCloser, error) {
	cmd := exec.Command(exe, role)
	cmd.Stderr = stderr
	cmd.SysProcAttr = childAttr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, err
	}
	return cmd, stdin, stdout, nil
}
