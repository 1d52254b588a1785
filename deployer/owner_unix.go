//go:build unix

package deployer

import (
	"os"
	"syscall"
)

// owner returns the user id that owns p (not following a symlink), or -1.
func owner(p string) int {
	fi, err := os.Lstat(p)
	if err != nil {
		return -1
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

// helperAttr returns the process attributes of a helper that serves a
// command (the sandbox's network): a session of its own, and death with
// Caddy.
func helperAttr() *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setsid: true}
	setParentDeathSignal(a)
	return a
}
