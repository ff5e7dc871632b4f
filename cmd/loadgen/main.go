// Command loadgen holds many SSE streams open against the app on this
// machine, posts timestamped messages, and reports how long they take to
// reach every stream, with presence churn and the server's memory per
// connection. It talks to loopback addresses only. See README.md here.
//
//	go build -o /tmp/lg ./cmd/loadgen
//	/tmp/lg -url http://127.0.0.1:8080 -conns 10000 -events-per-s 5 -duration 15s -pid $APP_PID -floor
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"globalpresence/internal/loadgen"
)

func main() {
	// A worker or floor child is this same binary, started by the parent.
	if code, ok := loadgen.Child(os.Args[1:], os.Stdin, os.Stdout, os.Stderr); ok {
		os.Exit(code)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return loadgen.Run(ctx, args, stdout, stderr)
}
