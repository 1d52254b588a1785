package deployer

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// 6. After a crash: a half-built release, a stray temporary symlink, a
// leftover build process and git lock files are cleaned up at start; the live
// release is kept and served; then the tip is deployed.
func TestRecoveryAfterCrash(t *testing.T) {
	r := newRemote(t)
	first := r.commit(map[string]string{"index.html": "v1"})
	path := filepath.Join(t.TempDir(), "site")
	tg := start(t, Config{Path: path, Remote: r.bare})
	s := tg.waitLive(first)
	live := s.Live.Release
	tg.close()

	// What kill -9 mid-deploy leaves behind.
	half := "20991231T235959Z-deadbeefdead"
	os.MkdirAll(filepath.Join(path, "releases", half, "public"), 0o755)
	os.WriteFile(filepath.Join(path, "releases", half, "public", "index.html"), []byte("half"), 0o644)
	os.Symlink("releases/"+half, filepath.Join(path, ".current.tmp-123"))
	lock := filepath.Join(path, "cache.git", "shallow.lock")
	os.WriteFile(lock, nil, 0o644)
	refLock := filepath.Join(path, "cache.git", "refs", "remotes", "origin", "main.lock")
	os.WriteFile(refLock, nil, 0o644)
	// A build process the crashed Caddy left running, in its own group.
	leftover := startLeftover(t, filepath.Join(path, "releases", half))
	st, _ := loadState(path)
	st.Building = &building{Release: half, PGID: leftover}
	st.save(path)

	second := r.commit(map[string]string{"index.html": "v2"})
	tg2 := start(t, Config{Path: path, Remote: r.bare, Commands: [][]string{{"sleep", "1"}}})
	// Served at once, before any deploy: the last good release.
	waitFor(t, "recovery", func() bool { return tg2.events.count(EventStarted) == 1 })
	if got := readCurrent(t, path, "index.html"); got != "v1" {
		t.Errorf("served %q during the first deploy after a crash, want v1", got)
	}
	for _, p := range []string{filepath.Join(path, "releases", half), filepath.Join(path, ".current.tmp-123"), lock, refLock} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s survived the restart", p)
		}
	}
	waitFor(t, "the leftover build to die", func() bool { return !alive(leftover) })
	s = tg2.waitLive(second)
	if got := readCurrent(t, path, "index.html"); got != "v2" {
		t.Errorf("served %q, want v2", got)
	}
	found := false
	for _, rel := range s.Releases {
		found = found || rel == live
	}
	if !found {
		t.Errorf("the previous live release %s was not kept: %v", live, s.Releases)
	}
}

// startLeftover starts a process in a group of its own with the environment
// a build of release has, and returns its pid (its group id).
func startLeftover(t *testing.T, release string) int {
	t.Helper()
	var procAttr = &os.ProcAttr{
		Env:   append(os.Environ(), "DEPLOY_RELEASE="+release),
		Files: []*os.File{nil, nil, nil},
		Sys:   ownGroupAttr(),
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip(err)
	}
	p, err := os.StartProcess(sleep, []string{"sleep", "300"}, procAttr)
	if err != nil {
		t.Fatal(err)
	}
	go p.Wait() // reap it when it is killed
	t.Cleanup(func() { p.Kill() })
	return p.Pid
}

// A crash between the switch and the state write leaves the live release
// recorded as building: recovery keeps it (it is complete and served) and
// knows its commit. A killed `git worktree add` leaves a locked record that
// would refuse a release of the same name: recovery clears it.
func TestRecoveryAfterCrashAtTheSwitch(t *testing.T) {
	r := newRemote(t)
	c1 := r.commit(map[string]string{"public/index.html": "v1", "secret-source.md": "draft"})
	path := filepath.Join(t.TempDir(), "site")
	tg := start(t, Config{Path: path, Remote: r.bare, Publish: "public"})
	live := tg.waitLive(c1).Live.Release
	tg.close()

	st, _ := loadState(path)
	st.Releases = nil
	st.Building = &building{Release: live, Commit: c1, Publish: "public"}
	st.save(path)
	locked := filepath.Join(path, "cache.git", "worktrees", "20991231T235959Z-deadbeefdead")
	os.MkdirAll(locked, 0o755)
	os.WriteFile(filepath.Join(locked, "locked"), []byte("initializing"), 0o644)

	tg2 := start(t, Config{Path: path, Remote: r.bare, Publish: "public"})
	if c := tg2.waitChecked(0); c.Outcome != OutcomeLive || c.Commit != c1 {
		t.Errorf("start-up after recovery: checked = %+v, want %s live", c, short(c1))
	}
	if got := readCurrent(t, path, "index.html"); got != "v1" {
		t.Errorf("served %q", got)
	}
	if n := tg2.events.count(EventStarted); n != 0 {
		t.Errorf("%d deploys of a commit that was live", n)
	}
	if _, err := os.Stat(locked); err == nil {
		t.Error("a locked worktree record survived recovery")
	}
	if ev, ok := tg2.events.last(EventRecovered); !ok || ev.Commit != c1 || ev.Release != live || ev.At.IsZero() {
		t.Errorf("recovered event = %+v", ev)
	}
	// The recovered release keeps its publish folder: a rollback to it
	// serves public/, not the sources.
	c2 := r.commit(map[string]string{"public/index.html": "v2"})
	tg2.Wake(ReasonDelivery)
	tg2.waitLive(c2)
	if _, err := tg2.Rollback(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	if link, _ := os.Readlink(filepath.Join(path, "current")); link != filepath.Join("releases", live, "public") {
		t.Errorf("after rollback current -> %s", link)
	}
}
