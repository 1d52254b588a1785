//go:build unix

package deployer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockPath takes an exclusive, non-blocking lock on path, so that two Caddy
// processes never deploy into the same folder. The kernel drops the lock when
// the process dies, however it dies.
func lockPath(path string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(path, lockName), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrBusy, path)
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return f, nil
}
