//go:build unix && !linux

package testkit

import "syscall"

// procAttr returns attr (nil: none) with a process group of its own if
// ownGroup. There is no parent-death signal outside Linux.
func procAttr(attr *syscall.SysProcAttr, ownGroup bool) *syscall.SysProcAttr {
	var a syscall.SysProcAttr
	if attr != nil {
		a = *attr
	}
	if ownGroup {
		a.Setpgid = true
	}
	return &a
}
