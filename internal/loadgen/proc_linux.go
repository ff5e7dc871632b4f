package loadgen

import "syscall"

// childAttr has the kernel kill a worker or floor process when the load
// generator dies without ending it (closing its stdin is the normal way).
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
