package deployer

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.uber.org/zap"
)

// prune removes releases beyond Keep, never the live one, logs of releases
// that are gone, but the last failed build's, and the placeholder page once
// a release is live.
func (d *Deployer) prune(cfg Config) {
	d.diskMu.Lock()
	defer d.diskMu.Unlock()
	live := liveRelease(d.path)
	d.dropPlaceholder()
	d.mu.Lock()
	keep := map[string]bool{live: true}
	for i := len(d.st.Releases) - 1; i >= 0 && len(keep) < cfg.Keep; i-- {
		keep[d.st.Releases[i].Name] = true
	}
	var drop []string
	for _, r := range d.st.Releases {
		if !keep[r.Name] {
			drop = append(drop, r.Name)
		}
	}
	// The newest release past Keep that is exact stays on disk as the spare
	// that the next deploy without commands reuses (see reuse.go), in place
	// of the spare before it. With keep 1 the user asked for nothing but
	// the live release on disk: no spare.
	spare := spareOf(d.st.Releases, keep, cfg.Keep)
	if old := d.st.Spare; old != nil && (cfg.Keep < 2 || spare != nil && old.Name != spare.Name) {
		if !keep[old.Name] {
			drop = append(drop, old.Name)
		}
		d.st.Spare = nil
	}
	if spare != nil {
		d.st.Spare = spare
	}
	for _, name := range drop {
		d.st.remove(name)
	}
	if d.st.Spare != nil {
		drop = slices.DeleteFunc(drop, func(name string) bool { return name == d.st.Spare.Name })
	}
	st := d.st
	lastLog := ""
	if d.last != nil && d.last.Result == "error" {
		lastLog = d.last.Log
	}
	d.mu.Unlock()

	// Forget the releases before removing them: a crash half-way through a
	// removal then leaves a folder that recovery removes, never a
	// half-removed release that the state offers for rollback.
	var errs []error
	if err := st.save(d.path); err != nil {
		d.log().Warn("pruning releases", zap.Error(err))
		return
	}
	dir := filepath.Join(d.path, releasesName)
	for _, name := range drop {
		errs = append(errs, os.RemoveAll(filepath.Join(dir, name)))
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		name, isLog := strings.CutSuffix(e.Name(), ".log")
		if !isLog || keep[name] || filepath.Join(dir, e.Name()) == lastLog {
			continue
		}
		errs = append(errs, os.Remove(filepath.Join(dir, e.Name())))
	}
	if err := errors.Join(errs...); err != nil {
		d.log().Warn("pruning releases", zap.Error(err))
	}
	if len(drop) > 0 {
		d.log().Debug("pruned releases", zap.Strings("releases", drop))
	}
}

// spareOf returns the release of releases (oldest first) to keep as the
// spare: the newest one not in keep, if it is exact; nil with keep 1.
func spareOf(releases []releaseRecord, keep map[string]bool, keepN int) *releaseRecord {
	if keepN < 2 {
		return nil
	}
	for i := len(releases) - 1; i >= 0; i-- {
		if r := releases[i]; !keep[r.Name] {
			if !r.Exact || r.Commit == "" {
				return nil
			}
			return &r
		}
	}
	return nil
}
