package deployer

import (
	"bytes"
	"encoding/pem"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const testToken = "ghp_TestTokenThatMustNeverLeak0123456789"

// gitHTTPServer serves the bare repositories of root over git's smart HTTP
// protocol (git http-backend behind CGI) on https, behind basic auth with
// testToken. git trusts its certificate through GIT_SSL_CAINFO.
func gitHTTPServer(t *testing.T, root string) *httptest.Server {
	t.Helper()
	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatal(err)
	}
	backend := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pw, ok := r.BasicAuth(); !ok || pw != testToken {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	trustTestCert(t, srv)
	return srv
}

// trustTestCert makes git trust the certificate of srv (httptest's TLS
// servers all share one).
func trustTestCert(t *testing.T, srv *httptest.Server) {
	t.Helper()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GIT_SSL_CAINFO", ca)
}

// argvWatch samples the command line of every process until stopped, and
// reports any that holds needle.
type argvWatch struct {
	stop  atomic.Bool
	wg    sync.WaitGroup
	mu    sync.Mutex
	found []string
	scans int
}

func watchArgv(needle string) *argvWatch {
	w := &argvWatch{}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for !w.stop.Load() {
			matches, _ := filepath.Glob("/proc/[0-9]*/cmdline")
			for _, m := range matches {
				if b, err := os.ReadFile(m); err == nil && bytes.Contains(b, []byte(needle)) {
					w.mu.Lock()
					w.found = append(w.found, strings.ReplaceAll(string(b), "\x00", " "))
					w.mu.Unlock()
				}
			}
			w.scans++
		}
	}()
	return w
}

func (w *argvWatch) done() ([]string, int) {
	w.stop.Store(true)
	w.wg.Wait()
	return w.found, w.scans
}

// 11. The token reaches git, and nothing else: not argv, not the cache
// repository's files, not logs, not errors, not the build's environment.
func TestTokenNeverLeaks(t *testing.T) {
	r := newRemote(t)
	tip := r.commit(map[string]string{"index.html": "private"})
	srv := gitHTTPServer(t, filepath.Dir(r.bare))
	remoteURL := srv.URL + "/" + filepath.Base(r.bare)

	watch := watchArgv(testToken)
	path := filepath.Join(t.TempDir(), "site")
	tg := start(t, Config{Path: path, Remote: remoteURL, Token: testToken,
		Commands: [][]string{{"sh", "-c", "env > env.txt"}}})
	tg.waitLive(tip)
	if got := readCurrent(t, path, "index.html"); got != "private" {
		t.Fatalf("served %q", got)
	}

	// A wrong token: an error that says so, without either token.
	tg.Update(Config{Path: path, Remote: remoteURL, Token: "wrong-" + testToken, Notify: tg.events.notify})
	r.commit(map[string]string{"index.html": "v2"})
	tg.Wake(ReasonDelivery)
	s := tg.waitResult("error", "")
	found, scans := watch.done()
	if len(found) > 0 {
		t.Errorf("token in a process's argv: %q", found)
	}
	if scans < 10 {
		t.Errorf("argv sampled only %d times", scans)
	}
	if !strings.Contains(s.Last.Error, "fetching main") || strings.Contains(s.Last.Error, testToken) {
		t.Errorf("error = %q", s.Last.Error)
	}
	t.Logf("error with a wrong token: %s", s.Last.Error)

	// Files on disk: the cache repository's config, state, logs, the release.
	filepath.WalkDir(path, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(testToken)) {
			t.Errorf("token written to %s", p)
		}
		return nil
	})
	for _, entry := range tg.logs.All() {
		line := entry.Message
		for k, v := range entry.ContextMap() {
			line += " " + k + "=" + toString(v)
		}
		if strings.Contains(line, testToken) {
			t.Errorf("token in a log line: %s", line)
		}
	}
}

func toString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return ""
}

// 11. Without credentials git never prompts: an HTTPS remote that asks for
// them and an ssh remote without a usable key are errors, not hangs.
func TestNoPrompt(t *testing.T) {
	r := newRemote(t)
	r.commit(map[string]string{"index.html": "x"})
	srv := gitHTTPServer(t, filepath.Dir(r.bare))

	cases := []struct{ name, remote, key string }{
		{"https without token", srv.URL + "/" + filepath.Base(r.bare), ""},
		{"ssh with a missing key", "ssh://git@127.0.0.1:1/site.git", filepath.Join(t.TempDir(), "no-such-key")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// The deploy's timeout is far beyond waitResult's deadline: a
			// git that prompted would fail the test by not ending in time.
			tg := start(t, Config{Remote: tc.remote, Branch: "main", SSHKey: tc.key, Timeout: time.Hour})
			s := tg.waitResult("error", "")
			if strings.Contains(s.Last.Error, "timeout") {
				t.Errorf("error = %q: it hung until the timeout", s.Last.Error)
			}
			t.Logf("error: %s", s.Last.Error)
		})
	}
}

func TestSSHCommandIsBatch(t *testing.T) {
	g := &git{sshKey: "/keys/deploy key's", knownHosts: "/keys/known_hosts"}
	got := g.sshCommand()
	for _, want := range []string{"BatchMode=yes", `-i '/keys/deploy key'\''s'`, "StrictHostKeyChecking=yes", "IdentitiesOnly=yes"} {
		if !strings.Contains(got, want) {
			t.Errorf("ssh command %q lacks %q", got, want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	cases := map[string]string{
		"https://x-access-token:ghp_abc@github.com/o/r.git": "https://redacted@github.com/o/r.git",
		"https://github.com/o/r.git":                        "https://github.com/o/r.git",
		"git@github.com:o/r.git":                            "git@github.com:o/r.git",
		"ssh://git@github.com/o/r.git":                      "ssh://git@github.com/o/r.git",
		"/srv/mirror/r.git":                                 "/srv/mirror/r.git",
	}
	for in, want := range cases {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
	if got := redactURLsIn("fatal: unable to access 'https://u:pw@h/x/': 403"); strings.Contains(got, "pw") {
		t.Errorf("redactURLsIn left the password: %q", got)
	}
}

// remoteWithSubmoduleAt returns a remote whose tip, also returned, has a
// submodule "theme" at url: an entry written by hand, so that url need not
// answer when the commit is made.
func remoteWithSubmoduleAt(t *testing.T, url string) (*remote, string) {
	t.Helper()
	r := newRemote(t)
	r.commit(map[string]string{"index.html": "x"})
	if err := os.WriteFile(filepath.Join(r.work, ".gitmodules"), []byte("[submodule \"theme\"]\n\tpath = theme\n\turl = "+url+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustGit(t, r.work, "add", ".gitmodules")
	mustGit(t, r.work, "update-index", "--add", "--cacheinfo", "160000,"+strings.TrimSpace(mustGit(t, r.work, "rev-parse", "HEAD"))+",theme")
	mustGit(t, r.work, "commit", "--quiet", "-m", "add a submodule on another host")
	mustGit(t, r.work, "push", "--quiet", "origin", "HEAD:main")
	return r, strings.TrimSpace(mustGit(t, r.work, "rev-parse", "HEAD"))
}

// The token goes to the remote's host only: a submodule on another host
// that asks for credentials gets none.
func TestTokenGoesToTheRemoteOnly(t *testing.T) {
	var mu sync.Mutex
	var offered []string
	other := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pw, ok := r.BasicAuth(); ok {
			mu.Lock()
			offered = append(offered, pw)
			mu.Unlock()
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="other"`)
		http.Error(w, "authentication required", http.StatusUnauthorized)
	}))
	defer other.Close()

	r, tip := remoteWithSubmoduleAt(t, other.URL+"/theme.git")
	srv := gitHTTPServer(t, filepath.Dir(r.bare))

	tg := start(t, Config{Remote: srv.URL + "/" + filepath.Base(r.bare), Token: testToken, Submodules: true})
	s := tg.waitResult("error", tip)
	if !strings.Contains(s.Last.Error, "submodules") {
		t.Errorf("error = %q, want the submodule's fetch to fail", s.Last.Error)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, pw := range offered {
		if pw == testToken {
			t.Fatal("the token was sent to the submodule's host")
		}
	}
}
