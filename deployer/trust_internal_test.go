package deployer

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

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

// BenchmarkCheckLinks measures checkServed, the check of what goes live
// that publish walks, on a release of 2,000 files in 20 folders, with 20
// internal links: for a checkout, which reads the modes of folders only,
// and after a build, which reads every file's:
//
//	go test -run '^$' -bench CheckLinks ./deployer
func BenchmarkCheckLinks(b *testing.B) {
	dir := b.TempDir()
	for i := 0; i < 2000; i++ {
		p := filepath.Join(dir, "site", fmt.Sprintf("d%02d", i%20), fmt.Sprintf("page%04d.html", i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("x"), 0o644)
	}
	for i := 0; i < 20; i++ {
		os.Symlink(fmt.Sprintf("../d%02d/page%04d.html", (i+1)%20, i+1), filepath.Join(dir, "site", fmt.Sprintf("d%02d", i), "link.html"))
	}
	for _, built := range []bool{false, true} {
		b.Run(map[bool]string{false: "checkout", true: "built"}[built], func(b *testing.B) {
			for b.Loop() {
				if _, _, err := checkServed(dir, dir, "", built); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
