//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package testkit

import (
	"fmt"
	"os"
	"syscall"
)

// lockFile takes an exclusive lock on the file path, waiting for it, and
// returns what releases it. The kernel releases it too when the process
// ends, so a killed build leaves no lock behind.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
