//go:build !linux

package cluster

import "syscall"

// sysProcAttr puts an app in its own process group, so a terminal's Ctrl-C
// reaches only the cluster command. Pdeathsig is Linux-only, so elsewhere a
// crashed test can leave apps running.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
