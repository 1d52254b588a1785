//go:build unix

package deployer

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// step is one commit of a sequence: what it does to the working clone.
type step struct {
	name string
	edit func(t *testing.T, work string)
}

// reuseSteps change files, modes and types in every way a tree can, so
// that each kind of change lands on a reused release at least once.
var reuseSteps = []step{
	{"first", func(t *testing.T, w string) {
		write(t, w, "index.html", "v1", 0o644)
		write(t, w, "keep.html", "same", 0o644)
		write(t, w, "a/b/c.txt", "c", 0o644)
		write(t, w, "a/b/d.txt", "d", 0o644)
		write(t, w, "script.sh", "#!/bin/sh\n", 0o644)
		write(t, w, "x", "file that becomes a folder", 0o644)
		write(t, w, "y/z.txt", "folder that becomes a file", 0o644)
		write(t, w, "deep/1/2/3.txt", "nested", 0o644)
		write(t, w, "tobelink.html", "file that becomes a symlink", 0o644)
		link(t, w, "index.html", "link.html")
	}},
	{"edit and 644->755", func(t *testing.T, w string) {
		write(t, w, "index.html", "v2", 0o644)
		chmod(t, w, "script.sh", 0o755)
	}},
	{"symlink->file, file->symlink", func(t *testing.T, w string) {
		remove(t, w, "link.html")
		write(t, w, "link.html", "a file now", 0o644)
		remove(t, w, "tobelink.html")
		link(t, w, "keep.html", "tobelink.html")
	}},
	{"file->dir, dir->file", func(t *testing.T, w string) {
		remove(t, w, "x")
		write(t, w, "x/inner.txt", "inside", 0o644)
		remove(t, w, "y/z.txt")
		write(t, w, "y", "a file now", 0o644)
	}},
	{"nested deletes, 755->644, adds", func(t *testing.T, w string) {
		remove(t, w, "deep/1/2/3.txt")
		remove(t, w, "a/b/c.txt")
		chmod(t, w, "script.sh", 0o644)
		write(t, w, "new/dir/page.html", "new", 0o644)
	}},
	{"mode and content at once, link to a folder", func(t *testing.T, w string) {
		write(t, w, "script.sh", "#!/bin/sh\necho hi\n", 0o755)
		link(t, w, "a/b", "linkdir")
		remove(t, w, "x/inner.txt")
		write(t, w, "x", "a file again", 0o644)
	}},
	{"back to folders from links and files", func(t *testing.T, w string) {
		remove(t, w, "linkdir")
		write(t, w, "linkdir/real.txt", "a folder now", 0o644)
		remove(t, w, "y")
		write(t, w, "y/z.txt", "folder again", 0o644)
		remove(t, w, "tobelink.html")
		write(t, w, "tobelink.html", "file again", 0o755)
	}},
	{"one-file change", func(t *testing.T, w string) {
		write(t, w, "index.html", "v8", 0o644)
	}},
}

func write(t *testing.T, work, name, content string, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(work, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	chmod(t, work, name, mode)
}

func chmod(t *testing.T, work, name string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(filepath.Join(work, name), mode); err != nil {
		t.Fatal(err)
	}
}

func link(t *testing.T, work, target, name string) {
	t.Helper()
	if err := os.Symlink(target, filepath.Join(work, name)); err != nil {
		t.Fatal(err)
	}
}

// remove removes a file and the folders it leaves empty, as git would see.
func remove(t *testing.T, work, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(work, name)); err != nil {
		t.Fatal(err)
	}
	for d := filepath.Dir(name); d != "."; d = filepath.Dir(d) {
		if os.Remove(filepath.Join(work, d)) != nil {
			break
		}
	}
}

// checkout returns tree() of a clean `git archive` of commit.
func checkout(t *testing.T, bare, commit string) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("git", "-c", "tar.umask=022", "archive", "--format=tar", commit)
	cmd.Dir = bare
	tar, err := cmd.Output()
	if err != nil {
		t.Fatalf("git archive %s: %v", commit, err)
	}
	x := exec.Command("tar", "-xpf", "-", "-C", dir)
	x.Stdin = bytes.NewReader(tar)
	if out, err := x.CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	return tree(t, dir)
}

// onDisk returns the releases the state knows, and the spare, by name, with
// their commits.
func onDisk(tg *target) (kept map[string]string, spare *releaseRecord) {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	kept = map[string]string{}
	for _, r := range tg.st.Releases {
		kept[r.Name] = r.Commit
	}
	if tg.st.Spare != nil {
		s := *tg.st.Spare
		spare = &s
	}
	return kept, spare
}

// checkReleases fails the test unless every release on disk, kept or
// spare, is byte for byte a checkout of its commit, and nothing else is in
// releases/.
func checkReleases(t *testing.T, tg *target, bare string) {
	t.Helper()
	kept, spare := onDisk(tg)
	want := map[string]string{}
	for name, commit := range kept {
		want[name] = commit
	}
	if spare != nil {
		want[spare.Name] = spare.Commit
	}
	for _, name := range releaseDirs(t, tg.path) {
		commit, ok := want[name]
		if !ok {
			t.Errorf("releases/%s is on disk but neither kept nor spare", name)
			continue
		}
		if got, want := tree(t, filepath.Join(tg.path, "releases", name)), checkout(t, bare, commit); got != want {
			t.Errorf("release %s differs from a checkout of %s:\n got:\n%s\nwant:\n%s", name, short(commit), got, want)
		}
	}
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// Across commits that change contents, modes and types (file, symlink,
// folder) every way, with keep 2 so that from the fourth deploy on each one
// reuses the spare release: every release on disk after every deploy, the
// live one, the kept one and the spare, is exactly a checkout of its
// commit. The reuse is checked by the folder: the new live release is the
// spare's folder, renamed.
func TestReusedReleasesEqualCheckout(t *testing.T) {
	r := newRemote(t)
	tg := start(t, Config{Remote: r.bare, Depth: DefaultDepth, Keep: 2}) // shallow, as the handler fetches
	reused := 0
	for i, s := range reuseSteps {
		s.edit(t, r.work)
		tip := r.commit(nil)
		_, spare := onDisk(tg)
		var spareIno uint64
		if spare != nil {
			spareIno = inode(t, filepath.Join(tg.path, "releases", spare.Name))
		}
		if i > 0 {
			tg.Wake(ReasonDelivery)
		}
		last := tg.waitDeployed(tip)
		if last.Result != "ok" {
			t.Fatalf("step %q: deploy failed: %s\n%s", s.name, last.Error, last.OutputTail)
		}
		live := tg.waitLive(tip).Live
		if live.Commit != tip {
			t.Fatalf("step %q: live %s, want %s", s.name, live.Commit, tip)
		}
		if spare != nil {
			if got := inode(t, filepath.Join(tg.path, "releases", live.Release)); got != spareIno {
				t.Errorf("step %q: the new release is not the spare %s reused", s.name, spare.Name)
			} else {
				reused++
			}
		}
		checkReleases(t, tg, r.bare)
		if t.Failed() {
			t.Fatalf("step %q failed", s.name)
		}
	}
	// The first three have no spare: a checkout, a linked release, and
	// one that pushes the first past keep, to be the spare.
	if want := len(reuseSteps) - 3; reused != want {
		t.Errorf("%d deploys reused the spare, want %d (all but the first three)", reused, want)
	}
}

// A rollback to a kept release serves exactly its commit after later
// deploys reused other releases around it.
func TestRollbackAfterReuse(t *testing.T) {
	r := newRemote(t)
	tg := start(t, Config{Remote: r.bare, Keep: 3})
	var tips []string
	for i, s := range reuseSteps {
		s.edit(t, r.work)
		tips = append(tips, r.commit(nil))
		if i > 0 {
			tg.Wake(ReasonDelivery)
		}
		tg.waitLive(tips[i])
	}
	s := tg.Status()
	oldest := s.Releases[len(s.Releases)-1]
	live, err := tg.Rollback(t.Context(), oldest)
	if err != nil {
		t.Fatal(err)
	}
	if want := tips[len(tips)-3]; live.Commit != want {
		t.Fatalf("rolled back to %s, want the oldest kept commit %s", short(live.Commit), short(want))
	}
	cur, err := filepath.EvalSymlinks(filepath.Join(tg.path, "current"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tree(t, cur), checkout(t, r.bare, live.Commit); got != want {
		t.Errorf("after the rollback, current serves:\n%s\nwant a checkout of %s:\n%s", got, short(live.Commit), want)
	}
	if got := readCurrent(t, tg.path, "link.html"); got != "a file now" {
		t.Errorf("current/link.html = %q", got)
	}
}

// After the first deploy, a deploy without commands starts at most three
// git processes (one, the fetch, once it reuses the spare: the cat-file
// reads the trees it compares), and one cat-file serves the
// deployer's whole life, started again when it died. Every git the
// deployer starts is found through PATH: a shim logs each one.
func TestGitProcessesPerDeploy(t *testing.T) {
	r := newRemote(t)
	real, err := exec.LookPath("git")
	if err != nil {
		t.Fatal(err)
	}
	shim := t.TempDir()
	logFile := filepath.Join(shim, "argv.log")
	script := "#!/bin/sh\nprintf '%s\\n' \"$PWD $*\" >> " + shellQuote(logFile) + "\nexec " + shellQuote(real) + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(shim, "git"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", shim+string(os.PathListSeparator)+os.Getenv("PATH"))

	path := filepath.Join(t.TempDir(), "site")
	tg := start(t, Config{Path: path, Remote: r.bare, Keep: 2})
	// lines returns the lines of the log, and mine those of git commands
	// the deployer ran (in its folder).
	lines := func() []string {
		b, _ := os.ReadFile(logFile)
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	mine := func(all []string) []string {
		var out []string
		for _, line := range all {
			if rest, ok := strings.CutPrefix(line, path+"/"); ok {
				out = append(out, rest)
			}
		}
		return out
	}
	catFiles := 0
	for i := 0; i < 7; i++ {
		tip := r.commit(map[string]string{"index.html": fmt.Sprintf("v%d", i)})
		mark := len(lines())
		if i == 0 {
			mark = 0
		} else {
			tg.Wake(ReasonDelivery)
		}
		tg.waitLive(tip)
		procs := mine(lines()[mark:])
		for _, p := range procs {
			if strings.Contains(p, "cat-file") {
				catFiles++
			}
		}
		if i > 0 && len(procs) > 3 {
			t.Errorf("deploy %d started %d git processes, want at most 3:\n%s", i+1, len(procs), strings.Join(procs, "\n"))
		}
		// From the fourth deploy on, the spare is reused: the fetch is the
		// only git started (besides a cat-file in place of a dead one).
		others := slices.DeleteFunc(slices.Clone(procs), func(p string) bool { return strings.Contains(p, " cat-file ") })
		if i >= 3 && (len(others) != 1 || !strings.Contains(others[0], " fetch ")) {
			t.Errorf("deploy %d started %q, want only the fetch", i+1, others)
		}
		if i == 4 {
			// cat-file dies: the next deploy starts another.
			tg.mu.Lock()
			pid := tg.cat.p.cmd.Process.Pid
			tg.mu.Unlock()
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if catFiles != 2 {
		t.Errorf("%d cat-file processes started, want 2: one for the deployer's life, one after it was killed", catFiles)
	}
}

// crashEnv, when set to a site folder, makes the test binary a Caddy that
// deploys until a deploy reuses the spare release, and stops that deploy
// half-way through updating it, for TestCrashDuringReuse to kill.
const crashEnv = "DEPLOYER_TEST_CRASH_REUSE"

// A kill -9 during an in-place update of the spare changes neither the
// live release nor a kept one, and the next start removes the half-updated
// release and deploys the tip.
func TestCrashDuringReuse(t *testing.T) {
	if path := os.Getenv(crashEnv); path != "" {
		crashingCaddy(t, path)
		return
	}
	r := newRemote(t)
	path := filepath.Join(t.TempDir(), "site")
	var tips []string
	for _, s := range reuseSteps[:4] {
		s.edit(t, r.work)
		tips = append(tips, r.commit(nil))
	}
	// The child deploys tips one by one: it reads the next from a file.
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	child := exec.Command(os.Args[0], "-test.run=^TestCrashDuringReuse$")
	child.Env = append(os.Environ(), crashEnv+"="+path, "DEPLOYER_TEST_REMOTE="+r.bare,
		"DEPLOYER_TEST_TIPS="+strings.Join(tips, " "))
	child.Stdout, child.Stderr = &out, &out
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { child.Wait(); close(exited) }()
	t.Cleanup(func() { child.Process.Kill(); <-exited })
	waitFor(t, "the child to stop half-way through updating the spare", func() bool {
		select {
		case <-exited:
			t.Fatalf("the child exited:\n%s", out.String())
		default:
		}
		_, err := os.Stat(filepath.Join(path, "halfway"))
		return err == nil
	})
	child.Process.Signal(syscall.SIGKILL)
	<-exited

	st, err := loadState(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Building == nil || st.Spare != nil {
		t.Fatalf("state after the crash: building %+v, spare %+v; want the reused release building and no spare", st.Building, st.Spare)
	}
	// A mark in the half-updated release: gone after the next start.
	mark := filepath.Join(path, "releases", st.Building.Release, "half-updated")
	if err := os.WriteFile(mark, nil, 0o644); err != nil {
		t.Fatalf("the release being updated is not on disk: %v", err)
	}
	// Live and kept releases are untouched.
	live := liveRelease(path)
	for _, rec := range st.Releases {
		if got, want := tree(t, filepath.Join(path, "releases", rec.Name)), checkout(t, r.bare, rec.Commit); got != want {
			t.Errorf("after the crash, release %s (live: %v) differs from its commit:\n got:\n%s\nwant:\n%s", rec.Name, rec.Name == live, got, want)
		}
	}
	if st.find(live) == nil || st.find(live).Commit != tips[2] {
		t.Fatalf("live %s is not the third tip", live)
	}

	// The next start removes the half-updated release and deploys the tip.
	tg := start(t, Config{Path: path, Remote: r.bare, Keep: 2})
	tg.waitLive(tips[3])
	if _, err := os.Stat(mark); err == nil {
		t.Errorf("the half-updated release %s is still on disk", st.Building.Release)
	}
	checkReleases(t, tg, r.bare)
}

// crashingCaddy is the child of TestCrashDuringReuse: it deploys the tips
// in DEPLOYER_TEST_TIPS with keep 2 (so that the fourth reuses the spare
// that the third left), the remote's branch moved to each in turn, and
// blocks half-way through the fourth's update, after it has changed a path
// of the reused release.
func crashingCaddy(t *testing.T, path string) {
	bare := os.Getenv("DEPLOYER_TEST_REMOTE")
	tips := strings.Fields(os.Getenv("DEPLOYER_TEST_TIPS"))
	halfway := WithFault(func(step, _ string) {
		if step == FaultReuse {
			os.WriteFile(filepath.Join(path, "halfway"), nil, 0o644)
			select {}
		}
	})
	mustGit(t, bare, "update-ref", "refs/heads/main", tips[0])
	d, err := New(Config{Path: path, Remote: bare, Keep: 2}, nil, halfway, withIdleAfter(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	tg := &target{Deployer: d, t: t, events: &events{}}
	tg.waitLive(tips[0])
	mustGit(t, bare, "update-ref", "refs/heads/main", tips[1])
	tg.Wake(ReasonDelivery)
	tg.waitLive(tips[1])
	for _, tip := range tips[2:] {
		mustGit(t, bare, "update-ref", "refs/heads/main", tip)
		tg.Wake(ReasonDelivery)
		if tip != tips[len(tips)-1] {
			tg.waitLive(tip)
		}
	}
	select {}
}

// A release made by reusing the spare has its symlinks checked from the
// list the state keeps, without a walk: a link that leaves the release
// (added, or made to leave by a folder turned into a link) fails the
// deploy, and the live site stays.
func TestReusedReleaseRefusesOutsideLinks(t *testing.T) {
	r := newRemote(t)
	tg := start(t, Config{Remote: r.bare, Keep: 2})
	write(t, r.work, "index.html", "v1", 0o644)
	write(t, r.work, "d/page.html", "page", 0o644)
	link(t, r.work, "d/page.html", "inside.html")
	var tip string
	for i := 0; i < 3; i++ { // the third leaves a spare
		write(t, r.work, "index.html", fmt.Sprintf("v%d", i), 0o644)
		tip = r.commit(nil)
		tg.Wake(ReasonDelivery)
		tg.waitLive(tip)
	}
	for _, tc := range []struct {
		name string
		edit func()
		undo func()
	}{
		{"a link out added", func() { link(t, r.work, "../../../../../../etc/passwd", "escape") },
			func() { remove(t, r.work, "escape") }},
		{"a folder an unchanged link goes through turned into a link out", func() {
			remove(t, r.work, "d/page.html")
			link(t, r.work, "../../../../../../etc", "d")
		}, func() {
			remove(t, r.work, "d")
			write(t, r.work, "d/page.html", "page", 0o644)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, spare := onDisk(tg); spare == nil || !spare.LinksKnown || !slices.Contains(spare.Links, "inside.html") {
				t.Fatalf("spare %+v: want one whose links are known", spare)
			}
			tc.edit()
			bad := r.commit(nil)
			tg.Wake(ReasonDelivery)
			s := tg.waitResult("error", bad)
			if !strings.Contains(s.Last.Error, "outside the release") {
				t.Errorf("deploy error %q, want a symlink refused", s.Last.Error)
			}
			if s.Live.Commit != tip {
				t.Errorf("live %s, want %s still", short(s.Live.Commit), short(tip))
			}
			tc.undo()
			tip = r.commit(nil)
			tg.Wake(ReasonDelivery)
			tg.waitLive(tip)
			checkReleases(t, tg, r.bare)
		})
	}
}
