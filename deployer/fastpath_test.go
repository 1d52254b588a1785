package deployer

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// A deploy without commands links unchanged files from the live release and
// writes the changed ones; the result is exactly a checkout of the tip, and
// the previous release is not touched.
func TestLinkedReleaseEqualsCheckout(t *testing.T) {
	r := newRemote(t)
	first := r.commit(map[string]string{
		"index.html":        "v1",
		"keep.html":         "same",
		"gone.html":         "to delete",
		"docs/a.html":       "a1",
		"docs/old/only.txt": "only file of a folder that goes away",
		"bin/run.sh":        "#!/bin/sh\n",
	})
	os.Symlink("index.html", filepath.Join(r.work, "link.html"))
	first = r.commit(nil)
	tg := start(t, Config{Remote: r.bare, Depth: DefaultDepth}) // shallow, as the handler fetches
	prev := tg.waitLive(first).Live.Release
	prevDir := filepath.Join(tg.path, "releases", prev)

	os.Chmod(filepath.Join(r.work, "bin/run.sh"), 0o755)
	os.Remove(filepath.Join(r.work, "link.html"))
	os.Symlink("docs/a.html", filepath.Join(r.work, "link.html"))
	tip := r.commit(map[string]string{
		"index.html":        "v2",
		"gone.html":         "\x00delete",
		"docs/old/only.txt": "\x00delete",
		"new/dir/page.html": "new",
		"docs/b.sh":         "#!/bin/sh\necho b\n",
	})
	tg.Wake(ReasonDelivery)
	s := tg.waitLive(tip)
	dir := filepath.Join(tg.path, "releases", s.Live.Release)

	// The fast path was taken: unchanged files share the previous inode.
	if !sameInode(t, filepath.Join(prevDir, "keep.html"), filepath.Join(dir, "keep.html")) {
		t.Error("keep.html was written again instead of linked")
	}
	if sameInode(t, filepath.Join(prevDir, "index.html"), filepath.Join(dir, "index.html")) {
		t.Error("changed index.html shares the previous release's inode")
	}
	if b, _ := os.ReadFile(filepath.Join(prevDir, "index.html")); string(b) != "v1" {
		t.Errorf("the previous release changed: index.html = %q", b)
	}

	// The release is exactly a checkout of the tip.
	clone := filepath.Join(t.TempDir(), "clone")
	mustGit(t, t.TempDir(), "clone", "--quiet", r.bare, clone)
	os.RemoveAll(filepath.Join(clone, ".git"))
	if got, want := tree(t, dir), tree(t, clone); got != want {
		t.Errorf("linked release differs from a checkout:\n got:\n%s\nwant:\n%s", got, want)
	}
}

func sameInode(t *testing.T, a, b string) bool {
	t.Helper()
	fa, errA := os.Lstat(a)
	fb, errB := os.Lstat(b)
	if errA != nil || errB != nil {
		t.Fatalf("stat: %v %v", errA, errB)
	}
	return os.SameFile(fa, fb)
}

// tree describes every entry under dir: path, type, permissions, content.
func tree(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(dir, p)
		info, _ := e.Info()
		switch {
		case e.Type()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			lines = append(lines, rel+" -> "+target)
		case e.IsDir():
			lines = append(lines, rel+"/")
		default:
			b, _ := os.ReadFile(p)
			lines = append(lines, rel+" "+info.Mode().Perm().String()+" "+string(b))
		}
		return nil
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
