//go:build !linux

package loadgen

import "syscall"

// childAttr: without Pdeathsig, children rely on their stdin closing and on
// their own time limit.
func childAttr() *syscall.SysProcAttr { return nil }
