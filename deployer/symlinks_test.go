package deployer

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// 1. A symlink that resolves outside what is served never goes live, through
// the fast path or a checkout: the deploy fails naming the link and its
// target, and the live site stays as it was. (On GitHub Pages such a link
// fails the build in the same way.)
func TestSymlinksOutsideNeverGoLive(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "token")
	os.WriteFile(secret, []byte("ghp_secret"), 0o600)

	attacks := []struct {
		name  string
		links map[string]string // link -> target, added by one commit
		want  string            // in the error: the link and its target
	}{
		{"absolute target", map[string]string{"favicon.ico": secret},
			`"favicon.ico" -> "` + secret + `"`},
		{"the state file", map[string]string{"x": "../../state.json"},
			`"x" -> "../../state.json"`},
		{"the cache repository", map[string]string{"y": "../../cache.git"},
			`"y" -> "../../cache.git"`},
		{"a climb hidden behind an inside link", map[string]string{
			// a/b/c/d -> ../../.. is the release root: inside. l reads as
			// inside too (a/b/c/d/../../state.json is a/b/state.json by
			// name), but the kernel follows d first, then climbs two
			// levels above the release root, to <path>/state.json.
			"a/b/c/d": "../../..",
			"l":       "a/b/c/d/../../state.json",
		}, `"l" -> "a/b/c/d/../../state.json"`},
		{"a chain of links", map[string]string{"p": "q", "q": "r/../.."},
			`"q" -> "r/../.."`},
	}
	for _, mode := range releaseModes {
		for _, a := range attacks {
			t.Run(mode.name+"/"+a.name, func(t *testing.T) {
				r := newRemote(t)
				first := r.commit(map[string]string{"index.html": "v1", "r/keep": "kept"})
				tg := start(t, Config{Remote: r.bare, Commands: mode.commands})
				live := tg.waitLive(first).Live

				for link, target := range a.links {
					p := filepath.Join(r.work, link)
					os.MkdirAll(filepath.Dir(p), 0o755)
					os.Remove(p)
					if err := os.Symlink(target, p); err != nil {
						t.Fatal(err)
					}
				}
				tip := r.commit(map[string]string{"index.html": "v2"})
				tg.Wake(ReasonDelivery)
				s := tg.waitRefused(tip)
				if !strings.Contains(s.Last.Error, a.want) || !strings.Contains(s.Last.Error, "outside the release") {
					t.Errorf("error = %q, want it to name %s", s.Last.Error, a.want)
				}
				if mode.commands == nil {
					if b, _ := os.ReadFile(s.Last.Log); !bytes.Contains(b, []byte("linked unchanged files")) {
						t.Errorf("the fast path was not taken: log %q", b)
					}
				}
				for link := range a.links {
					assertLiveUnchanged(t, tg, live, "v1", link)
				}
				if slices.Contains(releaseDirs(t, tg.path), s.Last.Release) {
					t.Errorf("the refused release %s is still on disk", s.Last.Release)
				}
			})
		}
	}
}

// 1. Links that stay inside the published folder are kept and served: to a
// file, to a folder, through a chain, and dangling ones.
func TestSymlinksInsideAreServed(t *testing.T) {
	for _, mode := range releaseModes {
		t.Run(mode.name, func(t *testing.T) {
			r := newRemote(t)
			first := r.commit(map[string]string{"index.html": "v1", "docs/a.html": "page a"})
			tg := start(t, Config{Remote: r.bare, Commands: mode.commands})
			tg.waitLive(first)

			for link, target := range map[string]string{
				"alias.html":         "index.html",
				"docs-alias":         "docs",
				"docs/up.html":       "../index.html",
				"chain.html":         "alias.html",
				"docs/self/loop":     "../self/loop",
				"missing.html":       "not-yet/there.html",
				"docs/deep/back.txt": "../../docs-alias/a.html",
			} {
				p := filepath.Join(r.work, link)
				os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.Symlink(target, p); err != nil {
					t.Fatal(err)
				}
			}
			tip := r.commit(map[string]string{"index.html": "v2"})
			tg.Wake(ReasonDelivery)
			tg.waitLive(tip)
			for name, want := range map[string]string{
				"alias.html":         "v2",
				"docs-alias/a.html":  "page a",
				"docs/up.html":       "v2",
				"chain.html":         "v2",
				"docs/deep/back.txt": "page a",
			} {
				if got := readCurrent(t, tg.path, name); got != want {
					t.Errorf("current/%s = %q, want %q", name, got, want)
				}
			}
			if target, err := os.Readlink(filepath.Join(tg.path, "current", "missing.html")); err != nil || target != "not-yet/there.html" {
				t.Errorf("dangling link inside: %q, %v", target, err)
			}
		})
	}
}

// 1. What a build writes is checked too, and so is the published folder
// alone: a link to the rest of the release leaves what is served.
func TestSymlinksFromBuildAndPublish(t *testing.T) {
	cases := []struct {
		name    string
		publish string
		command []string
		want    string
	}{
		{"a build links the password file", "", []string{"ln", "-s", "/etc/passwd", "leak.txt"},
			`symlink "leak.txt" -> "/etc/passwd" resolves outside the release`},
		{"a link out of the published folder", "public", []string{"ln", "-s", "../src/secret.txt", "public/leak.txt"},
			`symlink "public/leak.txt" -> "../src/secret.txt" resolves outside the published folder "public"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRemote(t)
			first := r.commit(map[string]string{"index.html": "v1", "public/index.html": "v1", "src/secret.txt": "source"})
			tg := start(t, Config{Remote: r.bare, Publish: tc.publish})
			live := tg.waitLive(first).Live

			tg.Update(Config{Remote: r.bare, Path: tg.path, Publish: tc.publish, Commands: [][]string{tc.command}, Notify: tg.events.notify})
			tip := r.commit(map[string]string{"index.html": "v2", "public/index.html": "v2"})
			tg.Wake(ReasonDelivery)
			s := tg.waitRefused(tip)
			if !strings.Contains(s.Last.Error, tc.want) {
				t.Errorf("error = %q, want %q", s.Last.Error, tc.want)
			}
			assertLiveUnchanged(t, tg, live, "v1", "leak.txt")
		})
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
