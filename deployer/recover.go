package deployer

import (
	"os"
	"path/filepath"
	"strings"

	"go.uber.org/zap"
)

// recoverFolder makes the folder consistent after whatever ended the last
// process, or the worker's last turn (a panic): it ends a build a crash left
// running, removes half-built releases, stray temporary symlinks and git's
// lock files, and keeps the live release. At start-up (announce), it emits
// EventRecovered when a release is live.
func (d *Deployer) recoverFolder(announce bool) {
	d.diskMu.Lock()
	defer d.diskMu.Unlock()
	st, err := loadState(d.path)
	if err != nil {
		d.log().Warn("starting from an empty state", zap.Error(err))
	}
	dir := filepath.Join(d.path, releasesName)
	live := liveRelease(d.path)
	if b := st.Building; b != nil && validReleaseName(b.Release) {
		rel := filepath.Join(dir, b.Release)
		if n := killLeftoverGroup(b.PGID, rel); n > 0 {
			d.log().Warn("ended a build left running by the last process", zap.String("release", b.Release), zap.Int("processes", n))
		}
		switch {
		case b.Release == live:
			// The process died between the switch and writing the state:
			// the release is complete, and live.
			if st.find(live) == nil {
				st.Releases = append(st.Releases, releaseRecord{Name: live, Commit: b.Commit, Publish: b.Publish, At: d.now()})
				st.LastSuccess = d.now()
			}
		default:
			if err := os.RemoveAll(rel); err != nil {
				d.log().Error("removing a half-built release", zap.String("release", b.Release), zap.Error(err))
			} else {
				d.log().Info("removed a half-built release", zap.String("release", b.Release))
			}
		}
	}
	st.Building = nil

	if tmps, _ := filepath.Glob(filepath.Join(d.path, tmpLinkGlob)); len(tmps) > 0 {
		for _, t := range tmps {
			os.Remove(t)
		}
		d.log().Info("removed stray temporary symlinks", zap.Int("count", len(tmps)))
	}

	known := map[string]bool{}
	kept := st.Releases[:0]
	for _, r := range st.Releases {
		if fi, err := os.Stat(filepath.Join(dir, r.Name)); err == nil && fi.IsDir() {
			kept = append(kept, r)
			known[r.Name] = true
		}
	}
	st.Releases = kept
	if sp := st.Spare; sp != nil {
		fi, err := os.Stat(filepath.Join(dir, sp.Name))
		if err != nil || !fi.IsDir() || known[sp.Name] || sp.Name == live || !validReleaseName(sp.Name) {
			st.Spare = nil
		}
	}
	if live != "" && !known[live] {
		if fi, err := os.Stat(filepath.Join(dir, live)); err == nil && fi.IsDir() {
			// Live, but unknown to the state: keep it, with no commit, so
			// that the tip is deployed again.
			st.Releases = append(st.Releases, releaseRecord{Name: live, Publish: livePublish(d.path)})
			known[live] = true
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() && !known[e.Name()] && (st.Spare == nil || e.Name() != st.Spare.Name) {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				d.log().Error("removing a half-built release", zap.String("release", e.Name()), zap.Error(err))
			} else {
				d.log().Info("removed a half-built release", zap.String("release", e.Name()))
			}
		}
	}
	if removed := clearLocks(filepath.Join(d.path, cacheName)); len(removed) > 0 {
		d.log().Info("removed git lock files left by the last process", zap.Strings("files", removed))
	}
	// No release is a worktree between deploys (publishing removes the link),
	// and a killed `git worktree add` leaves its record locked, which would
	// refuse a release of the same name. Forget them all.
	if err := os.RemoveAll(filepath.Join(d.path, cacheName, "worktrees")); err != nil {
		d.log().Error("removing worktree records", zap.Error(err))
	}
	d.mu.Lock()
	if fi, err := os.Lstat(filepath.Join(d.path, currentName)); err == nil {
		d.liveAt = fi.ModTime()
	}
	d.st = st
	d.mu.Unlock()
	if err := st.save(d.path); err != nil {
		d.log().Error("saving state", zap.Error(err))
	}
	if r := st.find(live); r != nil && announce {
		d.notify(Event{Kind: EventRecovered, Commit: r.Commit, Release: r.Name, At: st.LastSuccess})
	}
}

// validReleaseName reports whether name can be a folder of releases/.
func validReleaseName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\\\x00")
}

// livePublish returns the publish folder current points into, after the
// release's name.
func livePublish(path string) string {
	target, err := os.Readlink(filepath.Join(path, currentName))
	if err != nil {
		return ""
	}
	parts := strings.SplitN(filepath.ToSlash(filepath.Clean(target)), "/", 3)
	if len(parts) < 3 {
		return ""
	}
	return parts[2]
}
