package deployer

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

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

// 4. git gets the token only for an https remote (or http to a loopback
// host), and only through a helper scoped to its host; an http:// remote
// of another host with a token is a configuration error that does not show
// the token.
func TestTokenOnlyForHTTPSHost(t *testing.T) {
	for _, tc := range []struct {
		remote, key string // key: the helper's config key, "" for none
	}{
		{"https://github.com/o/r.git", "credential.https://github.com.helper"},
		{"https://git.example.com:8443/o/r.git", "credential.https://git.example.com:8443.helper"},
		{"http://127.0.0.1:3000/o/r.git", "credential.http://127.0.0.1:3000.helper"},
		{"http://localhost/o/r.git", "credential.http://localhost.helper"},
		{"http://[::1]:3000/o/r.git", "credential.http://[::1]:3000.helper"},
		{"http://git.example.com/o/r.git", ""},
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

	for _, remote := range []string{"http://github.com/o/r.git", "HTTP://github.com/o/r.git", "http://127.0.0.2.example/o/r.git"} {
		_, err := New(Config{Path: t.TempDir(), Remote: remote, Token: testToken}, nil)
		if err == nil || !strings.Contains(err.Error(), "token needs an https remote") || strings.Contains(err.Error(), testToken) {
			t.Errorf("New with %s and a token: %v", remote, err)
		}
	}
	if err := (Config{Path: "/srv/site", Remote: "http://mirror.example/site.git"}).Validate(); err != nil {
		t.Errorf("http:// without a token: %v", err)
	}
	// A forge on the same machine: the token never leaves it.
	for _, remote := range []string{"http://127.0.0.1:3000/o/r.git", "http://localhost/o/r.git", "http://[::1]/o/r.git"} {
		if err := (Config{Path: "/srv/site", Remote: remote, Token: testToken}).Validate(); err != nil {
			t.Errorf("%s with a token: %v", remote, err)
		}
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
