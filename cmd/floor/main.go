// Command floor serves the benchmark floor (see internal/floor) on a loopback
// address: the minimal hijack-and-write SSE server the app's figures are
// compared with.
//
//	go run ./cmd/floor -addr 127.0.0.1:0 -for 10m
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"globalpresence/internal/floor"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("floor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "loopback `address` to listen on")
	life := fs.Duration("for", time.Hour, "exit after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := checkLoopback(*addr); err != nil {
		return err
	}
	if *life <= 0 {
		return errors.New("-for must be positive")
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "floor: listening on http://%s\n", ln.Addr())
	ctx, cancel := context.WithTimeout(ctx, *life)
	defer cancel()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	err = floor.Serve(ln)
	if ctx.Err() != nil {
		return nil // stopped on purpose
	}
	return err
}

// checkLoopback refuses to listen anywhere but loopback: the floor is for
// benchmarks on this machine only.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.Unmap().IsLoopback() {
		return fmt.Errorf("-addr %s: the floor listens on loopback only (127.0.0.0/8 or ::1)", addr)
	}
	return nil
}
