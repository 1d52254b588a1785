package deployer

import (
	"bytes"
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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

// procWatch reads the environment and the command line of every process
// that the deployer started, as a build left running by Caddy's user could,
// until stopped, and reports every process where one of the needles shows.
// The deployer's processes descend from this one, in sessions of their own:
// those in this process's session are the test's (its own git commands, the
// server's git http-backend), and are left out, as are the processes of
// other tests running on the machine.
type procWatch struct {
	stop   atomic.Bool
	wg     sync.WaitGroup
	found  map[string]bool // "needle in /proc/<pid>/<file> of <argv>"
	git    int             // samples of a git process: the watch saw git run
	remote int             // samples of a git-remote-https
	scans  int
}

func watchProcs(t *testing.T, every time.Duration, needles map[string]string) *procWatch {
	t.Helper()
	self := strconv.Itoa(os.Getpid())
	_, ours, err := procStat(self)
	if err != nil {
		t.Skipf("no /proc to read: %v", err)
	}
	w := &procWatch{found: map[string]bool{}}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for !w.stop.Load() {
			dirs, _ := filepath.Glob("/proc/[0-9]*")
			parent, session := map[string]string{}, map[string]string{}
			for _, dir := range dirs {
				pid := filepath.Base(dir)
				parent[pid], session[pid], _ = procStat(pid)
			}
			for pid := range parent {
				if session[pid] == ours || !descends(parent, pid, self) {
					continue
				}
				argv, err := os.ReadFile("/proc/" + pid + "/cmdline")
				if err != nil {
					continue
				}
				if bytes.HasPrefix(argv, []byte("git\x00")) || bytes.Contains(argv, []byte("/git-")) {
					w.git++
				}
				env, _ := os.ReadFile("/proc/" + pid + "/environ")
				files := map[string][]byte{"cmdline": argv, "environ": env}
				if bytes.Contains(argv, []byte("remote-http")) {
					// The process that asks for the token: what it was
					// handed it on descriptor 3.
					w.remote++
					files["fd/3"] = readOpen("/proc/" + pid + "/fd/3")
				}
				for file, b := range files {
					for name, needle := range needles {
						if bytes.Contains(b, []byte(needle)) {
							w.found[fmt.Sprintf("%s in /proc/%s/%s of %q", name, pid, file, strings.ReplaceAll(string(argv), "\x00", " "))] = true
						}
					}
				}
			}
			w.scans++
			time.Sleep(every)
		}
	}()
	return w
}

// readOpen opens file, a descriptor of another process, and reads what it
// can at once, as another process could: nothing if it cannot be opened.
func readOpen(file string) []byte {
	f, err := os.OpenFile(file, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil
	}
	defer f.Close()
	f.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	b := make([]byte, 4096)
	n, _ := f.Read(b)
	return b[:max(n, 0)]
}

// procStat returns the parent and the session of process pid, from its
// stat file: the second and fourth fields after the command's name.
func procStat(pid string) (parent, session string, err error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return "", "", err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", "", fmt.Errorf("/proc/%s/stat: %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 4 {
		return "", "", fmt.Errorf("/proc/%s/stat: %q", pid, b)
	}
	return f[1], f[3], nil
}

// descends reports whether pid descends from ancestor in the tree that
// parent describes.
func descends(parent map[string]string, pid, ancestor string) bool {
	for range 100 {
		p, ok := parent[pid]
		if !ok || p == "0" || p == "" {
			return false
		}
		if p == ancestor {
			return true
		}
		pid = p
	}
	return false
}

func (w *procWatch) done() (found []string, git, remote, scans int) {
	w.stop.Store(true)
	w.wg.Wait()
	for f := range w.found {
		found = append(found, f)
	}
	slices.Sort(found)
	return found, w.git, w.remote, w.scans
}

// Trust boundaries, git processes: no git process carries a secret. During
// deploys from an https remote with a token, and two submodules on the same
// host, another process of Caddy's user reads every /proc/*/environ and
// /proc/*/cmdline every 10 ms: neither the webhook secret (a variable that
// Unset names) nor the token shows in any of them, the long-lived cat-file
// included, nor in what git-remote-https was handed on descriptor 3 (a pipe
// there could be opened and read through /proc/<pid>/fd/3). Before, every
// git process had Caddy's whole environment and, for the remote's host, the
// token in a variable of it.
func TestGitProcessesCarryNoSecret(t *testing.T) {
	const secret = "whsec_GitMustNeverSeeThis0123456789"
	t.Setenv("TEST_GITENV_WEBHOOK_SECRET", secret)

	r, _ := remoteWithSubmoduleAt(t, "") // the URL is set below, once the server runs
	srv := gitHTTPServer(t, filepath.Dir(r.bare))
	remoteURL := srv.URL + "/" + filepath.Base(r.bare)
	// Two submodules, both the site's own repository on the same host:
	// their fetches need the token too, one after the other, from the
	// socket of one git submodule.
	gitlink := strings.Fields(mustGit(t, r.work, "ls-files", "--stage", "theme"))[1]
	mustGit(t, r.work, "update-index", "--add", "--cacheinfo", "160000,"+gitlink+",theme2")
	modules := ""
	for _, name := range []string{"theme", "theme2"} {
		modules += "[submodule \"" + name + "\"]\n\tpath = " + name + "\n\turl = " + remoteURL + "\n"
	}
	if err := os.WriteFile(filepath.Join(r.work, ".gitmodules"), []byte(modules), 0o644); err != nil {
		t.Fatal(err)
	}
	mustGit(t, r.work, "add", ".gitmodules")
	mustGit(t, r.work, "commit", "--quiet", "-m", "two submodules on the same host")
	mustGit(t, r.work, "push", "--quiet", "origin", "HEAD:main")
	tip := strings.TrimSpace(mustGit(t, r.work, "rev-parse", "HEAD"))

	watch := watchProcs(t, 10*time.Millisecond, map[string]string{"the secret": secret, "the token": testToken})
	defer func() { // also when a deploy that does not go live ends the test
		found, git, remote, scans := watch.done()
		for _, f := range found {
			t.Error(f)
		}
		if scans < 10 || git == 0 || remote == 0 {
			t.Errorf("%d scans saw a git process %d times, a git-remote-https %d: the watch proves nothing", scans, git, remote)
		}
		t.Logf("%d scans, a git process seen %d times, a git-remote-https %d", scans, git, remote)
	}()
	tg := start(t, Config{Remote: remoteURL, Token: testToken, Depth: 0, Submodules: true,
		Unset: []string{"TEST_GITENV_WEBHOOK_SECRET"}})
	tg.waitLive(tip)
	for _, name := range []string{"theme", "theme2"} {
		if got := readCurrent(t, tg.path, name+"/index.html"); got != "x" {
			t.Errorf("%s/index.html = %q", name, got)
		}
	}
	for i := range 3 {
		tip = r.commit(map[string]string{"index.html": strconv.Itoa(i)})
		tg.Wake(ReasonDelivery)
		tg.waitLive(tip)
	}
	time.Sleep(50 * time.Millisecond) // the cat-file lives on: look at it a few times more
}

// The credential helper fails closed: a git that has it registered but no
// socket to read the token from (any git but runRemote's) does not
// authenticate, says why, and does not wait. runRemote's does.
func TestCredentialHelperWithoutSocket(t *testing.T) {
	r := newRemote(t)
	r.commit(map[string]string{"index.html": "x"})
	srv := gitHTTPServer(t, filepath.Dir(r.bare))
	dir := t.TempDir()
	g := &git{cacheDir: dir, remote: srv.URL + "/" + filepath.Base(r.bare), token: testToken}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	began := time.Now()
	_, err := g.exec(ctx, dir, g.env(g.remoteConfig()...), nil, []string{"ls-remote", "--", g.remote})
	if err == nil {
		t.Fatal("ls-remote without the socket succeeded")
	}
	for _, want := range []string{"no token for git on descriptor 3", "Authentication failed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if took := time.Since(began); took > 30*time.Second {
		t.Errorf("failing took %s", took)
	}
	t.Logf("error: %v", err)

	if out, err := g.runRemote(ctx, dir, "ls-remote", "--", g.remote); err != nil || !strings.Contains(out, "refs/heads/main") {
		t.Errorf("ls-remote through runRemote: %q, %v", out, err)
	}
}

// The token goes to the remote's host only: when the remote redirects to
// another host (here another port), git follows, and the other host, which
// asks for credentials, never gets the token.
func TestTokenNotSentAfterRedirect(t *testing.T) {
	var mu sync.Mutex
	var offered []string
	requests := 0
	r := newRemote(t)
	tip := r.commit(map[string]string{"index.html": "x"})
	real := gitHTTPServer(t, filepath.Dir(r.bare))
	other := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		mu.Lock()
		requests++
		if _, pw, ok := req.BasicAuth(); ok {
			offered = append(offered, pw)
		}
		mu.Unlock()
		// The other host serves the repository too, to whoever has the
		// token: a git that sent it would deploy.
		real.Config.Handler.ServeHTTP(w, req)
	}))
	defer other.Close()
	redirect := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		http.Redirect(w, req, other.URL+req.URL.RequestURI(), http.StatusMovedPermanently)
	}))
	defer redirect.Close()

	tg := start(t, Config{Remote: redirect.URL + "/" + filepath.Base(r.bare), Branch: "main", Token: testToken})
	s := tg.waitResult("error", "")
	if !strings.Contains(s.Last.Error, "fetching main") {
		t.Errorf("error = %q", s.Last.Error)
	}
	t.Logf("error: %s (tip %s not deployed)", s.Last.Error, short(tip))
	mu.Lock()
	defer mu.Unlock()
	if requests == 0 {
		t.Fatal("git never followed the redirect: the test proves nothing")
	}
	if slices.Contains(offered, testToken) {
		t.Fatal("the token was sent to the host the remote redirected to")
	}
}
