package cluster

import "syscall"

// sysProcAttr puts an app in its own process group, so a terminal's Ctrl-C
// reaches only the cluster command (which stops the apps in order), and has
// the kernel kill the app if the Go process dies without stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
