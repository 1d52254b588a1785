package deployer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"go.uber.org/zap"
)

// syncReleaseFiles puts a release's files on disk. made is what
// reuseSpare wrote, nil for a release made another way, which is synced
// whole (syncTree: one syncfs on Linux). A reused release was on disk
// before, as the spare (every release is synced before it goes live), so
// only what the deploy changed is: see syncMade. syncfs would also wait
// for every other dirty file of the file system: with the 20,000 files of
// another site's fresh checkout still dirty, 200 ms against 3 ms for the
// fsyncs (BenchmarkSyncOneFileChange).
func syncReleaseFiles(dir string, made *madeRelease) error {
	if made != nil {
		return syncMade(dir, made)
	}
	return syncTree(dir)
}

// syncMade puts on disk what reuseSpare changed in release dir: each file
// it wrote, each folder whose entries changed (symlinks and deletions are
// entries of their folders), the release's folder and releases/, whose
// entry the spare's rename changed. A folder that a deletion removed is
// gone: its parent, also listed, holds the change.
func syncMade(dir string, made *madeRelease) error {
	for _, p := range made.files {
		if err := fsyncPath(filepath.Join(dir, filepath.FromSlash(p))); err != nil {
			return fmt.Errorf("syncing the release to disk: %w", err)
		}
	}
	dirs := []string{filepath.Dir(dir), dir}
	for _, p := range made.dirs {
		if p != "." {
			dirs = append(dirs, filepath.Join(dir, filepath.FromSlash(p)))
		}
	}
	for _, p := range dirs {
		if err := fsyncPath(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("syncing the release to disk: %w", err)
		}
	}
	return nil
}

// fsyncPath fsyncs the file or folder p. Windows cannot open a folder to
// flush it: there, folders are skipped.
func fsyncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if runtime.GOOS == "windows" {
		if fi, err := f.Stat(); err == nil && fi.IsDir() {
			return nil
		}
	}
	return f.Sync()
}

// publish checks the release, strips what must not be served, puts it on
// disk and switches current to it. store, when set, is called with the
// published folder before the switch; its error stops the publish.
func (d *Deployer) publish(cfg Config, commit, name string, store func(name, pub string) error) error {
	dir := filepath.Join(d.path, releasesName, name)
	pub, err := publishedDir(dir, cfg.Publish)
	if err != nil {
		return err
	}
	made := d.made
	d.made = nil
	if made != nil && made.release != name {
		made = nil
	}
	// A reused release holds no .git (its spare held none, and only
	// safeGitPath paths were written) and no .gitattributes, and, when
	// its spare's links were known, its links are known: it is not walked.
	// Nor does it need checkServed's other checks: its spare was a release
	// without commands, checked when it went live, and reuseSpare writes
	// only regular files (0644, 0755), links and folders.
	// The others are walked once for .git and attributes and links, once
	// more (checkServed) for what goes live under the published folder.
	exact, links, linksKnown := made != nil, []string(nil), false
	if made != nil {
		links, linksKnown = made.links, made.linksKnown
	} else {
		walked, err := removeGitEntries(dir)
		if err != nil {
			return fmt.Errorf("removing .git from the release: %w", err)
		}
		exact = !walked.attrs && len(cfg.Commands) == 0 && !cfg.Submodules
		links, linksKnown = walked.links, walked.linksKnown
	}
	var cleared []string
	nCleared := 0
	if linksKnown && made != nil {
		err = checkLinkList(dir, pub, cfg.Publish, links)
	} else {
		cleared, nCleared, err = checkServed(dir, pub, cfg.Publish, len(cfg.Commands) > 0)
	}
	if err != nil {
		return err
	}
	if nCleared > 0 {
		d.log().Warn("cleared the setuid and setgid bits of what goes live", zap.String("release", name),
			zap.Strings("paths", cleared), zap.Int("count", nCleared))
	}
	if len(links) > maxKnownLinks {
		links, linksKnown = nil, false
	}
	// A power cut after the switch must not leave the live site with
	// files that were never written out.
	if err := d.syncRelease(dir, made); err != nil {
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
		Pristine: len(cfg.Commands) == 0 && !cfg.Submodules, Exact: exact, LinksKnown: linksKnown, Links: links})
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

// maxKnownLinks is how many symlinks the state lists for a release; a
// release with more has them walked when it is reused.
const maxKnownLinks = 256

// walkedRelease is what removeGitEntries saw of a release.
type walkedRelease struct {
	attrs      bool     // a .gitattributes somewhere
	links      []string // the symlinks, relative and slash-separated
	linksKnown bool     // links is all of them
}

// removeGitEntries removes everything named .git under dir: the checkout's
// own link to the cache, and those of submodules and nested worktrees. It
// reports whether dir holds a .gitattributes anywhere, and its symlinks.
func removeGitEntries(dir string) (w walkedRelease, _ error) {
	var errs []error
	w.linksKnown = true
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			errs = append(errs, err)
			w.linksKnown = false
			return nil
		}
		if e.Name() == ".gitattributes" {
			w.attrs = true
		}
		if e.Type()&fs.ModeSymlink != 0 && e.Name() != ".git" && w.linksKnown {
			if len(w.links) == maxKnownLinks {
				w.links, w.linksKnown = nil, false
			} else if rel, err := filepath.Rel(dir, p); err == nil {
				w.links = append(w.links, filepath.ToSlash(rel))
			}
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
	if err := errors.Join(append(errs, err)...); err != nil {
		return walkedRelease{}, err
	}
	return w, nil
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
