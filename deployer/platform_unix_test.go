//go:build unix

package deployer

import "syscall"

// ownGroupAttr starts a process as the leader of a process group of its own.
func ownGroupAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
