//go:build !linux

package deployer

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// syncTree puts the files under dir on disk: without syncfs(2), it fsyncs
// every file and folder under dir, one by one.
func syncTree(dir string) error {
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.Type().IsRegular() && !(e.IsDir() && runtime.GOOS != "windows") {
			return nil // Windows cannot open folders to flush them
		}
		f, err := os.OpenFile(p, os.O_RDONLY, 0)
		if err != nil {
			return err
		}
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("syncing the release to disk: %w", err)
	}
	return nil
}
