package testkit

import "syscall"

// procAttr returns attr (nil: none) with a parent-death signal, SIGKILL, so
// that a child outlives neither a test binary that crashed nor a bench or a
// demo that was killed, and with a process group of its own if ownGroup.
func procAttr(attr *syscall.SysProcAttr, ownGroup bool) *syscall.SysProcAttr {
	var a syscall.SysProcAttr
	if attr != nil {
		a = *attr
	}
	a.Pdeathsig = syscall.SIGKILL
	if ownGroup {
		a.Setpgid = true
	}
	return &a
}
