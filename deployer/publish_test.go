package deployer

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// 1. A published folder reached through a link inside the release stays
// allowed; the links under it are checked against the folder it resolves
// to, so one that points into the rest of the release is refused.
func TestPublishThroughALink(t *testing.T) {
	r := newRemote(t)
	r.commit(map[string]string{"build/out/index.html": "v1", "build/secret.txt": "not served"})
	os.Symlink("build/out", filepath.Join(r.work, "public"))
	os.Symlink("index.html", filepath.Join(r.work, "build/out/alias.html"))
	first := r.commit(nil)
	tg := start(t, Config{Remote: r.bare, Publish: "public"})
	live := tg.waitLive(first).Live
	if got := readCurrent(t, tg.path, "alias.html"); got != "v1" {
		t.Errorf("current/alias.html = %q, want v1", got)
	}

	os.Symlink("../secret.txt", filepath.Join(r.work, "build/out/leak.txt"))
	tip := r.commit(map[string]string{"build/out/index.html": "v2"})
	tg.Wake(ReasonDelivery)
	s := tg.waitRefused(tip)
	if want := `symlink "build/out/leak.txt" -> "../secret.txt" resolves outside the published folder "public"`; !strings.Contains(s.Last.Error, want) {
		t.Errorf("error = %q, want %q", s.Last.Error, want)
	}
	assertLiveUnchanged(t, tg, live, "v1", "leak.txt")
}

// 5. A release's files are on disk before current switches to it: the sync
// runs once per deploy, with the release complete and current still on the
// release before it. (What a power cut would do cannot be tested here; this
// checks that the call is made, and when.)
func TestSyncBeforeSwitch(t *testing.T) {
	type call struct{ live, index string }
	var mu sync.Mutex
	var calls []call
	var path string
	real := syncRelease
	syncRelease = func(dir string, made *madeRelease) error {
		b, _ := os.ReadFile(filepath.Join(dir, "index.html"))
		mu.Lock()
		calls = append(calls, call{liveRelease(path), string(b)})
		mu.Unlock()
		return real(dir, made)
	}
	t.Cleanup(func() { syncRelease = real })

	r := newRemote(t)
	first := r.commit(map[string]string{"index.html": "v1"})
	path = filepath.Join(t.TempDir(), "site")
	tg := start(t, Config{Path: path, Remote: r.bare})
	old := tg.waitLive(first).Live
	tip := r.commit(map[string]string{"index.html": "v2"})
	tg.Wake(ReasonDelivery)
	tg.waitLive(tip)

	mu.Lock()
	defer mu.Unlock()
	want := []call{{"", "v1"}, {old.Release, "v2"}}
	if !slices.Equal(calls, want) {
		t.Errorf("sync calls (live then, index.html) = %+v, want %+v", calls, want)
	}
}
