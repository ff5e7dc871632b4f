//go:build !linux

package redisnode

import "syscall"

// sysProcAttr puts redis in its own process group, so a terminal's Ctrl-C
// reaches only the Go process. Pdeathsig is Linux-only, so elsewhere a
// crashed test can leave redis running.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
