package deployer

import (
	"path/filepath"
	"strconv"
	"testing"
)

// 7. keep prunes old releases, never the live one.
func TestKeepPrunes(t *testing.T) {
	r := newRemote(t)
	path := filepath.Join(t.TempDir(), "site")
	tip := r.commit(map[string]string{"index.html": "v1"})
	tg := start(t, Config{Path: path, Remote: r.bare, Keep: 2})
	tg.waitLive(tip)
	for i := 2; i <= 4; i++ {
		tip = r.commit(map[string]string{"index.html": "v" + strconv.Itoa(i)})
		tg.Wake(ReasonDelivery)
		tg.waitLive(tip)
	}
	s := tg.Status()
	dirs := releaseDirs(t, path)
	// On disk: the two kept, and one past keep, the spare that the next
	// deploy reuses (never offered for rollback).
	if len(dirs) != 3 || len(s.Releases) != 2 {
		t.Fatalf("releases on disk %v, in status %v; want 2 kept and a spare", dirs, s.Releases)
	}
	if s.Releases[0] != s.Live.Release {
		t.Errorf("newest release %s is not live %s", s.Releases[0], s.Live.Release)
	}
	logs, _ := filepath.Glob(filepath.Join(path, "releases", "*.log"))
	if len(logs) != 2 {
		t.Errorf("logs %v, want one per kept release", logs)
	}

	// After a rollback, the live release is the older one; pruning keeps it.
	if _, err := tg.Rollback(t.Context(), s.Releases[1]); err != nil {
		t.Fatal(err)
	}
	tip = r.commit(map[string]string{"index.html": "v5"})
	tg.Update(Config{Path: path, Remote: r.bare, Keep: 1, Notify: tg.events.notify})
	tg.Wake(ReasonDelivery)
	s = tg.waitLive(tip)
	if dirs := releaseDirs(t, path); len(dirs) != 1 || dirs[0] != s.Live.Release {
		t.Errorf("keep 1: releases %v, live %s", dirs, s.Live.Release)
	}
}
