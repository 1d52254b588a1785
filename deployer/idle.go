package deployer

import (
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"
)

// idleAfter is how long the worker waits, with no wake, after a deploy
// before it looks after the cache repository: a deploy never waits for
// housekeeping, and a burst of deploys does it once.
const idleAfter = 30 * time.Second

// maintain looks after the cache repository while the worker is idle: it
// forgets the worktree records of full checkouts (publish removed their
// folders' links) and lets git pack loose objects and refs when they have
// piled up (gc --auto, which fetch does not start: fixedGitConfig turns
// automatic gc and maintenance off for every other command). It runs in the
// worker goroutine, so never at the same time as a fetch.
func (d *Deployer) maintain() {
	cfg := d.config()
	g := d.git(cfg)
	d.fetchMu.Lock() // a preview's fetch runs on its own worker
	defer d.fetchMu.Unlock()
	if _, err := os.Stat(filepath.Join(g.cacheDir, "HEAD")); err != nil {
		return
	}
	if _, err := os.Stat(filepath.Join(g.cacheDir, "worktrees")); err == nil {
		if _, err := g.run(d.ctx, g.cacheDir, "worktree", "prune"); err != nil && d.ctx.Err() == nil {
			d.log().Warn("pruning worktree records of the cache repository", zap.Error(err))
		}
	}
	// gc --auto does nothing until git's own thresholds are passed; it
	// keeps the objects of every commit a ref points at.
	if _, err := g.run(d.ctx, g.cacheDir, "-c", "gc.auto=6700", "-c", "gc.autoPackLimit=50", "-c", "gc.autoDetach=false",
		"gc", "--auto", "--quiet"); err != nil && d.ctx.Err() == nil {
		d.log().Warn("packing the cache repository", zap.Error(err))
	}
}
