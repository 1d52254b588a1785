package deployer

import (
	"bytes"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// Release modes of the trust tests: without commands a deploy takes the
// hard-link fast path; with one it checks out in full.
var releaseModes = []struct {
	name     string
	commands [][]string
}{
	{"fast path", nil},
	{"checkout", [][]string{{"true"}}},
}

// waitRefused waits until no deploy runs and either the last one failed or
// tip went live, and marks the test failed unless the deploy failed.
func (tg *target) waitRefused(tip string) Status {
	tg.t.Helper()
	var s Status
	waitFor(tg.t, "the deploy of "+short(tip)+" to end", func() bool {
		s = tg.Status()
		return s.Running == nil && s.Last != nil && (s.Last.Result == "error" || s.Live != nil && s.Live.Commit == tip)
	})
	if s.Last.Result != "error" {
		tg.t.Errorf("commit %s went live: %+v", short(tip), s.Last)
	}
	return s
}

// assertLiveUnchanged checks what a visitor sees after a refused deploy: the
// same release, serving the same index.html, and no file named name.
func assertLiveUnchanged(t *testing.T, tg *target, live *Live, index, name string) {
	t.Helper()
	s := tg.Status()
	if s.Live == nil || s.Live.Release != live.Release || s.Live.Commit != live.Commit {
		t.Errorf("live = %+v, want release %s unchanged", s.Live, live.Release)
	}
	if got := readCurrent(t, tg.path, "index.html"); got != index {
		t.Errorf("current/index.html = %q, want %q", got, index)
	}
	if name != "" {
		if _, err := os.Lstat(filepath.Join(tg.path, "current", name)); err == nil {
			t.Errorf("current/%s exists: the refused release went live", name)
		}
	}
}

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

// 1. Rolling back checks the target's links again: a release that gained an
// escaping link on disk does not go live.
func TestRollbackRefusesEscapingLink(t *testing.T) {
	r := newRemote(t)
	first := r.commit(map[string]string{"index.html": "v1"})
	tg := start(t, Config{Remote: r.bare})
	old := tg.waitLive(first).Live
	tip := r.commit(map[string]string{"index.html": "v2"})
	tg.Wake(ReasonDelivery)
	live := tg.waitLive(tip).Live

	os.Symlink("../../state.json", filepath.Join(tg.path, "releases", old.Release, "state.json"))
	_, err := tg.Rollback(t.Context(), old.Release)
	if err == nil || !strings.Contains(err.Error(), `"state.json" -> "../../state.json"`) {
		t.Fatalf("Rollback = %v, want an error naming the link", err)
	}
	assertLiveUnchanged(t, tg, live, "v2", "state.json")
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

// 3. git runs nothing the deployer did not choose: hooks and an fsmonitor
// written into the cache repository (as a build without sandbox can), a
// filter driver in its config, then hooks from the user's git configuration
// and from Caddy's environment never run, on the fast path or a checkout.
func TestGitRunsNoPlantedHooks(t *testing.T) {
	for _, mode := range releaseModes {
		t.Run(mode.name, func(t *testing.T) {
			r := newRemote(t)
			first := r.commit(map[string]string{"index.html": "v1"})
			tg := start(t, Config{Remote: r.bare, Commands: mode.commands})
			tg.waitLive(first)

			marks := t.TempDir()
			script := func(name string) []byte {
				return []byte("#!/bin/sh\necho ran > '" + filepath.Join(marks, name) + "'\ncat\n")
			}
			hookNames := []string{"post-checkout", "reference-transaction", "pre-auto-gc", "post-index-change", "fsmonitor-watchman", "post-merge"}
			// deploy pushes content, then sets the variable (git of the test
			// itself must not see it), deploys, and checks what ran.
			deploy := func(content, variable, value string) {
				t.Helper()
				tip := r.commit(map[string]string{"index.html": content})
				if variable != "" {
					t.Setenv(variable, value)
					defer os.Unsetenv(variable)
				}
				tg.Wake(ReasonDelivery)
				tg.waitLive(tip)
				if got := readCurrent(t, tg.path, "index.html"); got != content {
					t.Errorf("current/index.html = %q, want %q", got, content)
				}
				if ran, _ := os.ReadDir(marks); len(ran) > 0 {
					var names []string
					for _, e := range ran {
						names = append(names, e.Name())
					}
					t.Errorf("planted programs ran: %v", names)
					os.RemoveAll(marks)
					os.Mkdir(marks, 0o755)
				}
			}

			// Planted in the cache repository.
			cache := filepath.Join(tg.path, "cache.git")
			os.MkdirAll(filepath.Join(cache, "hooks"), 0o755)
			os.MkdirAll(filepath.Join(cache, "info"), 0o755)
			for _, h := range hookNames {
				os.WriteFile(filepath.Join(cache, "hooks", h), script("cache-"+h), 0o755)
			}
			fsmonitor := filepath.Join(t.TempDir(), "fsmonitor")
			os.WriteFile(fsmonitor, script("fsmonitor"), 0o755)
			filter := filepath.Join(t.TempDir(), "filter")
			os.WriteFile(filter, script("filter"), 0o755)
			mustGit(t, cache, "config", "--file", "config", "core.fsmonitor", fsmonitor)
			mustGit(t, cache, "config", "--file", "config", "filter.evil.smudge", filter)
			mustGit(t, cache, "config", "--file", "config", "filter.evil.required", "true")
			os.WriteFile(filepath.Join(cache, "info", "attributes"), []byte("* filter=evil\n"), 0o644)
			deploy("v2", "", "")
			if b, _ := os.ReadFile(filepath.Join(cache, "config")); bytes.Contains(b, []byte("fsmonitor")) || bytes.Contains(b, []byte("evil")) {
				t.Errorf("the cache repository's config still holds what was planted:\n%s", b)
			}

			// In the user's git configuration and in Caddy's environment.
			userHooks := t.TempDir()
			for _, h := range hookNames {
				os.WriteFile(filepath.Join(userHooks, h), script("user-"+h), 0o755)
			}
			global := filepath.Join(t.TempDir(), "gitconfig")
			os.WriteFile(global, []byte("[core]\n\thooksPath = "+userHooks+"\n"), 0o644)
			deploy("v3", "GIT_CONFIG_GLOBAL", global)
			deploy("v4", "GIT_CONFIG_PARAMETERS", "'core.hookspath'='"+userHooks+"'")
		})
	}
}

// 4. With a local remote, git never sees the token: a submodule on another
// host that asks for credentials gets no Authorization header at all.
func TestTokenNotForNonHTTPSRemotes(t *testing.T) {
	var mu sync.Mutex
	var requests, authorized int
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests++
		if r.Header.Get("Authorization") != "" {
			authorized++
		}
		mu.Unlock()
		w.Header().Set("WWW-Authenticate", `Basic realm="other"`)
		http.Error(w, "authentication required", http.StatusUnauthorized)
	}))
	defer other.Close()

	r, tip := remoteWithSubmoduleAt(t, other.URL+"/theme.git")

	tg := start(t, Config{Remote: r.bare, Token: testToken, Submodules: true})
	s := tg.waitRefused(tip)
	if !strings.Contains(s.Last.Error, "submodules") {
		t.Errorf("error = %q, want the submodule's fetch to fail", s.Last.Error)
	}
	mu.Lock()
	defer mu.Unlock()
	if requests == 0 {
		t.Fatal("the submodule's host was never asked: the test proves nothing")
	}
	if authorized > 0 {
		t.Errorf("%d of %d requests to the submodule's host carried an Authorization header", authorized, requests)
	}
}

// 4. git gets the token only for an https remote, and only through a helper
// scoped to its host; an http:// remote with a token is a configuration
// error that does not show the token.
func TestTokenOnlyForHTTPSHost(t *testing.T) {
	for _, tc := range []struct {
		remote, key string // key: the helper's config key, "" for none
	}{
		{"https://github.com/o/r.git", "credential.https://github.com.helper"},
		{"https://git.example.com:8443/o/r.git", "credential.https://git.example.com:8443.helper"},
		{"ssh://git@github.com/o/r.git", ""},
		{"git@github.com:o/r.git", ""},
		{"/srv/mirror/site.git", ""},
		{"file:///srv/mirror/site.git", ""},
	} {
		g := &git{remote: tc.remote, token: testToken}
		if helpers := credentialHelpers(g.env()); len(helpers) > 0 {
			t.Errorf("%s: a git that does not talk to the remote has helpers %q", tc.remote, helpers)
		}
		env := g.env(g.remoteConfig()...)
		if strings.Contains(strings.Join(env, "\n"), testToken) {
			t.Errorf("%s: the token is in git's environment", tc.remote)
		}
		if helpers := credentialHelpers(env); tc.key == "" && len(helpers) > 0 || tc.key != "" && !slices.Equal(helpers, []string{tc.key}) {
			t.Errorf("%s: helpers registered as %q, want only %q", tc.remote, helpers, tc.key)
		}
	}

	for _, remote := range []string{"http://github.com/o/r.git", "HTTP://github.com/o/r.git"} {
		_, err := New(Config{Path: t.TempDir(), Remote: remote, Token: testToken}, nil)
		if err == nil || !strings.Contains(err.Error(), "token needs an https remote") || strings.Contains(err.Error(), testToken) {
			t.Errorf("New with %s and a token: %v", remote, err)
		}
	}
	if err := (Config{Path: "/srv/site", Remote: "http://mirror.example/site.git"}).Validate(); err != nil {
		t.Errorf("http:// without a token: %v", err)
	}
}

// credentialHelpers returns the keys of the credential helpers that env
// registers through GIT_CONFIG_*, the empty ones (resets) left out.
func credentialHelpers(env []string) []string {
	keys, values := map[string]string{}, map[string]string{}
	for _, kv := range env {
		if rest, ok := strings.CutPrefix(kv, "GIT_CONFIG_KEY_"); ok {
			n, key, _ := strings.Cut(rest, "=")
			keys[n] = key
		} else if rest, ok := strings.CutPrefix(kv, "GIT_CONFIG_VALUE_"); ok {
			n, value, _ := strings.Cut(rest, "=")
			values[n] = value
		}
	}
	var helpers []string
	for n, key := range keys {
		if strings.HasPrefix(key, "credential.") && strings.HasSuffix(key, ".helper") && values[n] != "" {
			helpers = append(helpers, key)
		}
	}
	return helpers
}

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
