package deployer

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	"go.uber.org/zap"
)

// prune removes releases beyond Keep, never the live one, and logs of
// releases that are gone, but the last failed build's.
func (d *Deployer) prune(cfg Config) {
	d.diskMu.Lock()
	defer d.diskMu.Unlock()
	live := liveRelease(d.path)
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
	for _, name := range drop {
		d.st.remove(name)
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
	g := d.git(cfg)
	if _, err := os.Stat(filepath.Join(g.cacheDir, "worktrees")); err == nil {
		if _, err := g.run(d.ctx, g.cacheDir, "worktree", "prune"); err != nil && d.ctx.Err() == nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		d.log().Warn("pruning releases", zap.Error(err))
	}
	if len(drop) > 0 {
		d.log().Debug("pruned releases", zap.Strings("releases", drop))
	}
}
