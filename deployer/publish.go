package deployer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"
)

// syncRelease puts a release's files on disk; tests wrap it.
var syncRelease = syncTree

// publish checks the release, strips what must not be served, puts it on
// disk and switches current to it. store, when set, is called with the
// published folder before the switch; its error stops the publish.
func (d *Deployer) publish(cfg Config, commit, name string, store func(name, pub string) error) error {
	dir := filepath.Join(d.path, releasesName, name)
	pub, err := publishedDir(dir, cfg.Publish)
	if err != nil {
		return err
	}
	if err := removeGitEntries(dir); err != nil {
		return fmt.Errorf("removing .git from the release: %w", err)
	}
	if err := checkLinks(dir, pub, cfg.Publish); err != nil {
		return err
	}
	// A power cut after the switch must not leave the live site with
	// files that were never written out.
	if err := syncRelease(dir); err != nil {
		return err
	}
	if store != nil {
		if err := store(name, pub); err != nil {
			return err
		}
	}
	d.diskMu.Lock()
	defer d.diskMu.Unlock()
	if err := switchCurrent(d.path, filepath.Join(releasesName, name, cfg.Publish)); err != nil {
		return err
	}
	now := d.now()
	d.mu.Lock()
	d.st.Building = nil
	d.st.FailedCommit = ""
	d.st.PinnedFrom = ""
	d.st.LastSuccess = now
	d.st.Releases = append(d.st.Releases, releaseRecord{Name: name, Commit: commit, Publish: cfg.Publish, At: now,
		Pristine: len(cfg.Commands) == 0 && !cfg.Submodules})
	d.liveAt = now
	st := d.st
	d.mu.Unlock()
	if err := st.save(d.path); err != nil {
		// The site is live; only the memory of it across a restart is lost.
		d.log().Error("saving state", zap.Error(err))
	}
	return nil
}

// publishedDir returns the folder of release dir that goes live, and checks
// that it is a folder inside the release, symlinks resolved.
func publishedDir(dir, publish string) (string, error) {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", fmt.Errorf("resolving the release: %w", err)
	}
	if publish == "" {
		return root, nil
	}
	target, err := filepath.EvalSymlinks(filepath.Join(dir, publish))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("publish folder %q does not exist after the build", publish)
		}
		return "", fmt.Errorf("resolving publish folder %q: %w", publish, err)
	}
	if rel, err := filepath.Rel(root, target); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("publish folder %q resolves outside the release", publish)
	}
	if fi, err := os.Stat(target); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("publish folder %q is not a folder", publish)
	}
	return target, nil
}

// removeGitEntries removes everything named .git under dir: the checkout's
// own link to the cache, and those of submodules and nested worktrees.
func removeGitEntries(dir string) error {
	var errs []error
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		if e.Name() == ".git" {
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, err)
			}
			if e.IsDir() {
				return filepath.SkipDir
			}
		}
		return nil
	})
	return errors.Join(append(errs, err)...)
}

// switchCurrent points path/current at target (relative to path) in one
// rename(2) of a fresh symlink over the old one: readers see the old site or
// the new one, never neither.
func switchCurrent(path, target string) error {
	cur := filepath.Join(path, currentName)
	if fi, err := os.Lstat(cur); err == nil && fi.Mode()&fs.ModeSymlink == 0 {
		return fmt.Errorf("%s is not a symlink; move it away so the deployer can manage it", cur)
	}
	tmp := filepath.Join(path, fmt.Sprintf(".current.tmp-%d", time.Now().UnixNano()))
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("switching current: %w", err)
	}
	if err := os.Rename(tmp, cur); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("switching current: %w", err)
	}
	if f, err := os.Open(path); err == nil {
		f.Sync()
		f.Close()
	}
	return nil
}
