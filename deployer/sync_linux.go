//go:build linux

package deployer

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// syncTree puts the files under dir on disk: syncfs(2) of the file system
// that holds dir flushes everything the deploy wrote there (checkout, build
// output, links) in one call, however many files that is.
func syncTree(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing the release to disk: %w", err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("syncing the release to disk: syncfs: %w", err)
	}
	return nil
}
