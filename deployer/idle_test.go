package deployer

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Housekeeping of the cache repository waits until the worker is idle: a
// full checkout leaves its worktree record after the deploy (no prune on
// the hot path), and the record is gone once the worker has been idle for
// idleAfter.
func TestHousekeepingWhenIdle(t *testing.T) {
	r := newRemote(t)
	tip := r.commit(map[string]string{"index.html": "v1"})
	path := filepath.Join(t.TempDir(), "site")
	// Idle 5 s after a deploy: far more than the test takes to look
	// at the record after the first deploy.
	d, err := New(Config{Path: path, Remote: r.bare}, nil, withIdleAfter(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	tg := &target{Deployer: d, t: t, events: &events{}}
	t.Cleanup(tg.close)
	tg.waitLive(tip)
	records := filepath.Join(path, cacheName, "worktrees")
	if entries, err := os.ReadDir(records); err != nil || len(entries) != 1 {
		t.Fatalf("worktree records after the first deploy: %v, %v; want the checkout's, not pruned on the hot path", entries, err)
	}

	if c := tg.wake(ReasonManual); c.Outcome != OutcomeLive {
		t.Fatalf("wake: %+v", c)
	}
	waitFor(t, "the worktree record pruned while idle", func() bool {
		entries, _ := os.ReadDir(records)
		return len(entries) == 0
	})
}
