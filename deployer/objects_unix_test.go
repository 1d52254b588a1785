//go:build unix

package deployer

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// underUmask runs the rest of the test with the process's umask set to
// mask, as a service hardened with UMask=0077 runs.
func underUmask(t *testing.T, mask int) {
	old := syscall.Umask(mask)
	t.Cleanup(func() { syscall.Umask(old) })
}

// longTarget is a symlink target of exactly maxLinkTarget bytes that
// resolves to name, of odd length, inside the release.
func longTarget(name string) string {
	if len(name)%2 == 0 {
		panic("longTarget of a name of even length")
	}
	return strings.Repeat("./", (maxLinkTarget-len(name))/2) + name
}

// endless is a symlink blob with no end: a writer that reads it whole
// never returns. It fails the read past limit so that the test ends.
type endless struct{ read, limit int }

func (e *endless) Read(p []byte) (int, error) {
	if e.read > e.limit {
		return 0, errors.New("read past the limit")
	}
	for i := range p {
		p[i] = 'a'
	}
	e.read += len(p)
	return len(p), nil
}

// The one writer, under umask 077: files are 0644 or 0755 and folders
// 0755 exactly, never what the umask leaves; a link of maxLinkTarget bytes
// is made, a longer one refused after reading one byte past the limit;
// what it replaces gets a new inode. Before, the fast path's writer gave
// 0600 under this umask and read a link's blob whole, and the reuse's cut
// a long target short.
func TestWriterModesAndLinkLimit(t *testing.T) {
	underUmask(t, 0o077)
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()

	if err := makeDirs(root, filepath.Join("a", "b")); err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct{ name, mode string }{
		{"a/b/page.html", "100644"}, {"a/run.sh", "100755"},
	} {
		if err := writeObject(root, filepath.FromSlash(w.name), w.mode, strings.NewReader("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeFile(root, "c.sh", true, strings.NewReader("x"), nil, time.Unix(1e9, 5)); err != nil {
		t.Fatal(err)
	}
	want := map[string]fs.FileMode{
		"a": fs.ModeDir | 0o755, "a/b": fs.ModeDir | 0o755,
		"a/b/page.html": 0o644, "a/run.sh": 0o755, "c.sh": 0o755,
	}
	for name, mode := range want {
		fi, err := os.Lstat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != mode {
			t.Errorf("%s is %v under umask 077, want %v", name, fi.Mode(), mode)
		}
	}
	if fi, _ := os.Stat(filepath.Join(dir, "c.sh")); !fi.ModTime().Equal(time.Unix(1e9, 5)) {
		t.Errorf("c.sh modified at %v, want %v", fi.ModTime(), time.Unix(1e9, 5))
	}

	// Replacing: a new inode, the old one untouched.
	before := inode(t, filepath.Join(dir, "a/run.sh"))
	os.Link(filepath.Join(dir, "a/run.sh"), filepath.Join(dir, "shared"))
	if err := writeObject(root, filepath.FromSlash("a/run.sh"), "100644", strings.NewReader("y")); err != nil {
		t.Fatal(err)
	}
	if inode(t, filepath.Join(dir, "a/run.sh")) == before {
		t.Error("a/run.sh was written in place, not replaced")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "shared")); string(b) != "x" {
		t.Errorf("a file sharing the replaced inode changed: %q", b)
	}

	target := longTarget("a/b/page.html")
	if len(target) != maxLinkTarget {
		t.Fatalf("longTarget is %d bytes", len(target))
	}
	if err := writeObject(root, "far", "120000", strings.NewReader(target)); err != nil {
		t.Fatalf("a link of %d bytes: %v", maxLinkTarget, err)
	}
	if got, _ := os.Readlink(filepath.Join(dir, "far")); got != target {
		t.Errorf("the link's target is %d bytes, want the %d written", len(got), len(target))
	}
	if err := writeObject(root, "too-far", "120000", strings.NewReader(target+"x")); !errors.Is(err, errLinkTooLong) {
		t.Errorf("a link of %d bytes: %v, want errLinkTooLong", maxLinkTarget+1, err)
	}
	blob := &endless{limit: 1 << 20}
	if err := writeObject(root, "endless", "120000", blob); !errors.Is(err, errLinkTooLong) {
		t.Errorf("an endless link blob: %v, want errLinkTooLong", err)
	}
	if blob.read > 64<<10 {
		t.Errorf("the writer read %d bytes of a link blob, want no more than a buffer past %d", blob.read, maxLinkTarget)
	}
	if err := writeLink(root, "too-far", target+"x"); !errors.Is(err, errLinkTooLong) {
		t.Errorf("writeLink of %d bytes: %v, want errLinkTooLong", maxLinkTarget+1, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 4 {
		t.Errorf("%d entries left in the folder, want 4 (a, c.sh, far, shared and no temporary file)", len(entries))
	}
}

// gitModes checks that every path of commit (as git lists it) is in dir
// with git's mode, each symlink with its target, every folder 0755: what a
// checkout would make under umask 022, whatever the umask is.
func gitModes(t *testing.T, bare, commit, dir string, skip ...string) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(mustGit(t, bare, "ls-tree", "-r", commit)), "\n") {
		meta, p, _ := strings.Cut(line, "\t")
		f := strings.Fields(meta)
		full := filepath.Join(dir, filepath.FromSlash(p))
		fi, err := os.Lstat(full)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		switch f[0] {
		case "120000":
			target, _ := os.Readlink(full)
			if want := mustGit(t, bare, "cat-file", "blob", f[2]); target != want {
				t.Errorf("%s links to %d bytes, want the %d of its blob", p, len(target), len(want))
			}
		case "100755", "100644":
			if want := filePerm(f[0] == "100755"); fi.Mode() != want {
				t.Errorf("%s is %v, git's mode is %s: want %v", p, fi.Mode(), f[0], want)
			}
		}
	}
	filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			if fi, _ := e.Info(); fi.Mode().Perm() != 0o755 {
				t.Errorf("folder %s is %v, want 0755", p, fi.Mode().Perm())
			}
		}
		return nil
	})
}

// buildLog returns the build log of release name.
func buildLog(t *testing.T, tg *target, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(tg.path, "releases", name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Under umask 077, every way of making a release without commands makes
// the files of git's tree 0644 or 0755 and its folders 0755, and keeps a
// symlink of maxLinkTarget bytes whole: the full checkout (git's writer,
// fixed after), the fast path that links from the live release, the reuse
// of a spare, and a follower unpacking the group's archive. Before, the
// checkout, the fast path and the unpack left 0600 files and 0700
// folders, and the reuse 0700 folders.
func TestEveryWayOfMakingAReleaseUnderUmask(t *testing.T) {
	underUmask(t, 0o077)
	r := newRemote(t)
	run := filepath.Join(r.work, "run.sh")
	far := filepath.Join(r.work, "far")
	commit := func(files map[string]string, link string, exec bool) string {
		r.Write(files)
		os.Remove(far)
		if err := os.Symlink(link, far); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o600)
		if exec {
			mode = 0o700
		}
		os.Chmod(run, mode)
		return r.commit(nil)
	}

	tg := start(t, Config{Remote: r.bare, Depth: DefaultDepth, Keep: 2})
	steps := []struct {
		way   string // what the build log says; "" for a checkout
		files map[string]string
		link  string
		exec  bool
	}{
		{"", map[string]string{"page.html": "1", "run.sh": "#!/bin/sh\n", "docs/a.html": "a"}, longTarget("page.html"), true},
		{"linked unchanged files", map[string]string{"page.html": "2", "new/dir/b.html": "b"}, longTarget("docs/a.html"), false},
		{"linked unchanged files", map[string]string{"docs/a.html": "a2", "new/dir2/c.html": "c"}, longTarget("page.html"), true},
		{"reused release", map[string]string{"page.html": "4", "x/y/z.html": "z"}, longTarget("docs/a.html"), false},
	}
	for i, s := range steps {
		tip := commit(s.files, s.link, s.exec)
		if i > 0 {
			tg.Wake(ReasonDelivery)
		}
		last := tg.waitDeployed(tip)
		if last.Result != "ok" {
			t.Fatalf("step %d: %s\n%s", i, last.Error, last.OutputTail)
		}
		live := tg.waitLive(tip).Live
		if log := buildLog(t, tg, live.Release); s.way != "" && !strings.Contains(log, s.way) {
			t.Fatalf("step %d: the release was not made the way under test (%q): %s", i, s.way, log)
		}
		gitModes(t, r.bare, tip, filepath.Join(tg.path, "releases", live.Release))
	}

	// A group: the follower unpacks what the builder packed. The
	// builder's command writes stamp under the umask (0600): the
	// follower's is 0644.
	g := newGroup(t)
	g.remote = r
	tip := r.commit(map[string]string{"page.html": "group"})
	builder := g.node("a")
	builder.waitLive(tip)
	follower := g.node("b")
	live := follower.waitLive(tip).Live
	dir := filepath.Join(follower.path, "releases", live.Release)
	gitModes(t, r.bare, tip, dir)
	if fi, err := os.Lstat(filepath.Join(dir, "stamp")); err != nil || fi.Mode() != 0o644 {
		t.Errorf("the follower's stamp: %v %v, want 0644", fi.Mode(), err)
	}
	if log := buildLog(t, builder, builder.Status().Live.Release); !strings.Contains(log, "$ sh -c") {
		t.Errorf("the builder did not build: %s", log)
	}
}
