package deployer

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	beforeSync := WithFault(func(step, dir string) {
		if step != FaultSync {
			return
		}
		b, _ := os.ReadFile(filepath.Join(dir, "index.html"))
		mu.Lock()
		calls = append(calls, call{liveRelease(path), string(b)})
		mu.Unlock()
	})

	r := newRemote(t)
	first := r.commit(map[string]string{"index.html": "v1"})
	path = filepath.Join(t.TempDir(), "site")
	tg := start(t, Config{Path: path, Remote: r.bare}, beforeSync)
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

// 5. Readers of current never see an error, an empty file or two versions
// mixed, during 20 deploys.
func TestSwitchIsAtomic(t *testing.T) {
	r := newRemote(t)
	tip := r.commit(map[string]string{"index.html": "v0", "about.html": "v0"})
	tg := start(t, Config{Remote: r.bare})
	tg.waitLive(tip)

	var stop atomic.Bool
	var reads atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan string, 10)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			a, errA := os.ReadFile(filepath.Join(tg.path, "current", "index.html"))
			// Through one resolved release, both files must agree.
			dir, errD := filepath.EvalSymlinks(filepath.Join(tg.path, "current"))
			b, errB := os.ReadFile(filepath.Join(dir, "about.html"))
			c, errC := os.ReadFile(filepath.Join(dir, "index.html"))
			reads.Add(1)
			switch {
			case errA != nil || errB != nil || errC != nil || errD != nil:
				errs <- "read error: " + errors.Join(errA, errB, errC, errD).Error()
				return
			case len(a) == 0 || len(b) == 0:
				errs <- "empty file"
				return
			case string(b) != string(c):
				errs <- "mixed versions: " + string(b) + " and " + string(c)
				return
			}
		}
	}()
	for i := 1; i <= 20; i++ {
		v := "v" + strconv.Itoa(i)
		tip = r.commit(map[string]string{"index.html": v, "about.html": v})
		tg.Wake(ReasonDelivery)
		tg.waitLive(tip)
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if reads.Load() < 100 {
		t.Errorf("only %d reads", reads.Load())
	}
	t.Logf("%d reads during 20 deploys", reads.Load())
}

// 8. Nothing named .git is served, with publish at the root and with
// submodules.
func TestNoGitInPublishedTree(t *testing.T) {
	sub := newRemote(t)
	sub.commit(map[string]string{"theme.css": "body{}"})
	r := newRemote(t)
	r.commit(map[string]string{"index.html": "v1"})
	mustGit(t, r.work, "-c", "protocol.file.allow=always", "submodule", "add", "--quiet", sub.bare, "themes/basic")
	tip := r.commit(nil)

	tg := start(t, Config{Remote: r.bare, Submodules: true})
	tg.waitLive(tip)
	if got := readCurrent(t, tg.path, "themes/basic/theme.css"); got != "body{}" {
		t.Errorf("submodule file = %q", got)
	}
	live, _ := filepath.EvalSymlinks(filepath.Join(tg.path, "current"))
	filepath.WalkDir(live, func(p string, e os.DirEntry, err error) error {
		if err == nil && e.Name() == ".git" {
			t.Errorf("%s is served", p)
		}
		return nil
	})
}
