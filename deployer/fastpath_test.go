package deployer

import (
	"bytes"
	"encoding/hex"
	"os"
	"os/exec"
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

// treeEntry is one entry of a tree object written by hand.
type treeEntry struct{ mode, name, object string }

// hashObject writes an object of type kind into the repository at dir, as
// it is: --literally, so that git's own checks do not refuse it.
func hashObject(t *testing.T, dir, kind string, content []byte) string {
	t.Helper()
	cmd := exec.Command("git", "hash-object", "-t", kind, "-w", "--literally", "--stdin")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(content)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git hash-object: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func writeTree(t *testing.T, dir string, entries ...treeEntry) string {
	t.Helper()
	var b bytes.Buffer
	for _, e := range entries {
		raw, err := hex.DecodeString(e.object)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(e.mode + " " + e.name + "\x00")
		b.Write(raw)
	}
	return hashObject(t, dir, "tree", b.Bytes())
}

// dotDotCommit pushes to r a commit whose tree holds ".." entries that lead
// to <path>/cache.git/hooks/post-checkout and to escaped.txt at three levels
// above the release, as `git hash-object --literally` can make and a
// remote without fsck takes. It returns the commit.
func dotDotCommit(t *testing.T, r *remote, parent, marker string) string {
	hook := hashObject(t, r.bare, "blob", []byte("#!/bin/sh\ntouch '"+marker+"'\n"))
	note := hashObject(t, r.bare, "blob", []byte("escaped"))
	index := hashObject(t, r.bare, "blob", []byte("v2"))
	hooks := writeTree(t, r.bare, treeEntry{"100755", "post-checkout", hook})
	cache := writeTree(t, r.bare, treeEntry{"40000", "hooks", hooks})
	up3 := writeTree(t, r.bare, treeEntry{"100644", "escaped.txt", note})
	up2 := writeTree(t, r.bare, treeEntry{"40000", "..", up3}, treeEntry{"40000", "cache.git", cache}, treeEntry{"100644", "escaped.txt", note})
	up1 := writeTree(t, r.bare, treeEntry{"40000", "..", up2}, treeEntry{"100644", "escaped.txt", note})
	root := writeTree(t, r.bare, treeEntry{"40000", "..", up1}, treeEntry{"100644", "index.html", index})
	commit := strings.TrimSpace(mustGit(t, r.bare, "commit-tree", "-p", parent, "-m", "climb out", root))
	mustGit(t, r.bare, "update-ref", "refs/heads/main", commit)
	return commit
}

// copyObjects writes every object reachable from commit in from into the
// repository to, unchecked, as a build without sandbox or an older version
// without fsck could have left them in the cache.
func copyObjects(t *testing.T, from, to, commit string) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(mustGit(t, from, "rev-list", "--objects", commit)), "\n") {
		id, _, _ := strings.Cut(line, " ")
		kind := strings.TrimSpace(mustGit(t, from, "cat-file", "-t", id))
		content, err := exec.Command("git", "-C", from, "cat-file", kind, id).Output()
		if err != nil {
			t.Fatal(err)
		}
		if got := hashObject(t, to, kind, content); got != id {
			t.Fatalf("copied %s as %s", id, got)
		}
	}
}

// 3. A commit whose tree holds ".." entries writes nothing outside the
// release: fetch's fsck refuses it, and when its objects are already in the
// cache (so nothing is fetched), the fast path refuses its paths and git's
// own checkout refuses the tree. The live site stays as it was.
func TestDotDotTreeEntryWritesNothingOutside(t *testing.T) {
	cases := []struct {
		name   string
		depth  int
		seeded bool   // the bad objects are in the cache before the fetch
		want   string // in the error
	}{
		{"refused at fetch", DefaultDepth, false, "hasDotdot"},
		{"already in the cache", 0, true, "invalid path"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			path := filepath.Join(base, "site")
			r := newRemote(t)
			first := r.commit(map[string]string{"index.html": "v1"})
			tg := start(t, Config{Path: path, Remote: r.bare, Depth: tc.depth})
			live := tg.waitLive(first).Live

			marker := filepath.Join(path, "hooked")
			tip := dotDotCommit(t, r, first, marker)
			if tc.seeded {
				copyObjects(t, r.bare, filepath.Join(path, "cache.git"), tip)
			}
			tg.Wake(ReasonDelivery)
			s := tg.waitRefused(tip)
			if !strings.Contains(s.Last.Error, tc.want) {
				t.Errorf("error = %q, want it to say %q", s.Last.Error, tc.want)
			}
			t.Logf("error: %s", s.Last.Error)
			for _, p := range []string{
				filepath.Join(path, "cache.git", "hooks", "post-checkout"),
				filepath.Join(path, "releases", "escaped.txt"),
				filepath.Join(path, "escaped.txt"),
				filepath.Join(base, "escaped.txt"),
				marker,
			} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s was written", p)
				}
			}
			assertLiveUnchanged(t, tg, live, "v1", "escaped.txt")

			// A good commit after it deploys, and runs no planted hook.
			os.WriteFile(filepath.Join(r.work, "index.html"), []byte("v3"), 0o644)
			mustGit(t, r.work, "commit", "--quiet", "-am", "good again")
			mustGit(t, r.work, "push", "--quiet", "--force", "origin", "HEAD:main")
			good := strings.TrimSpace(mustGit(t, r.work, "rev-parse", "HEAD"))
			tg.Wake(ReasonDelivery)
			tg.waitLive(good)
			if _, err := os.Lstat(marker); err == nil {
				t.Error("a hook from the tree ran")
			}
		})
	}
}

// safeGitPath refuses what git's checkout refuses.
func TestSafeGitPath(t *testing.T) {
	for p, want := range map[string]bool{
		"index.html": true, "a/b/c.txt": true, ".github/x.yml": true, ".gitignore": true,
		"...": true, ".git-foo/x": true, "git~2": true,
		"": false, "/etc/passwd": false, "../x": false, "a/../b": false, "a/./b": false,
		"a//b": false, "a/": false, ".": false, "..": false,
		".git/hooks/post-checkout": false, ".GIT/config": false, "a/.Git/x": false,
		".git./x": false, ".git /x": false, "GIT~1/x": false, ".git::$INDEX_ALLOCATION/x": false,
		".g\u200cit/config": false, "a\x00b": false, `a\b`: false, `..\x`: false,
	} {
		if got := safeGitPath(p); got != want {
			t.Errorf("safeGitPath(%q) = %v, want %v", p, got, want)
		}
	}
}
