package redisnode

import "syscall"

// sysProcAttr puts redis in its own process group, so a terminal's Ctrl-C
// reaches only the Go process and Stop still shuts redis down cleanly, and
// has the kernel kill redis if the Go process dies without stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
