package deployer

import (
	"bytes"
	"context"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// tokenRemote serves the bare repositories of root over git's smart HTTP
// protocol on https, as gitHTTPServer does, accepting only the tokens that
// the test says are current (as x-access-token's password), and records
// the password of every request.
type tokenRemote struct {
	*httptest.Server
	mu      sync.Mutex
	current map[string]bool
	seen    []string // the password of each request, "" for none
}

func newTokenRemote(t *testing.T, root string) *tokenRemote {
	t.Helper()
	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatal(err)
	}
	backend := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	tr := &tokenRemote{current: map[string]bool{}}
	tr.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pw, ok := r.BasicAuth()
		tr.mu.Lock()
		tr.seen = append(tr.seen, pw)
		good := ok && user == "x-access-token" && tr.current[pw]
		tr.mu.Unlock()
		if !good {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(tr.Close)
	trustTestCert(t, tr.Server)
	return tr
}

// accept makes tokens the only current ones.
func (tr *tokenRemote) accept(tokens ...string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	clear(tr.current)
	for _, t := range tokens {
		tr.current[t] = true
	}
}

// takeSeen returns the passwords seen since the last call.
func (tr *tokenRemote) takeSeen() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	s := tr.seen
	tr.seen = nil
	return s
}

// testTokens is a TokenSource that hands out next, and records what it was
// told failed; a failed token is not handed out again, as a forge's
// installation tokens are not.
type testTokens struct {
	mu     sync.Mutex
	next   string
	asked  int
	failed []string
}

func (s *testTokens) Token(context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked++
	return s.next, nil
}

func (s *testTokens) Failed(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failed = append(s.failed, token)
}

func (s *testTokens) set(next string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next = next
}

func (s *testTokens) state() (asked int, failed []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.asked, slices.Clone(s.failed)
}

// TestTokenSourceAtEachFetch: with a TokenSource, each fetch asks it for
// the token and uses what it gets, so a fetch after the source renewed its
// token sends the new one only; a fetch that the remote refuses tells the
// source which token failed, and the deployer's retry gets and uses the
// next one; no token shows in an error, a log line, a file of the target or
// a process's argv.
func TestTokenSourceAtEachFetch(t *testing.T) {
	const (
		first   = "ghs_FirstInstallationToken0123456789abcd"
		renewed = "ghs_RenewedInstallationToken0123456789ab"
		third   = "ghs_ThirdInstallationToken0123456789abcd"
	)
	r := newRemote(t)
	tip := r.commit(map[string]string{"index.html": "one"})
	srv := newTokenRemote(t, filepath.Dir(r.bare))
	srv.accept(first)
	src := &testTokens{next: first}

	watch := watchArgv("InstallationToken")
	path := filepath.Join(t.TempDir(), "site")
	tg := start(t, Config{Path: path, Remote: srv.URL + "/" + filepath.Base(r.bare), Branch: "main", TokenSource: src},
		withRetryBase(50*time.Millisecond))
	tg.waitLive(tip)
	if asked, _ := src.state(); asked == 0 {
		t.Fatal("the token source was never asked")
	}
	for _, pw := range srv.takeSeen() {
		if pw != "" && pw != first {
			t.Errorf("the remote got %q, want only the first token", pw)
		}
	}

	// The source renewed its token; the old one is no longer accepted.
	src.set(renewed)
	srv.accept(renewed)
	asked, _ := src.state()
	tip = r.commit(map[string]string{"index.html": "two"})
	tg.wake(ReasonDelivery)
	tg.waitLive(tip)
	if n, _ := src.state(); n <= asked {
		t.Errorf("the source was asked %d times in all, %d before the second fetch: not asked again", n, asked)
	}
	sawRenewed := false
	for _, pw := range srv.takeSeen() {
		switch pw {
		case "":
		case renewed:
			sawRenewed = true
		default:
			t.Errorf("after the renewal the remote got %q", pw)
		}
	}
	if !sawRenewed {
		t.Error("the fetch after the renewal did not send the renewed token")
	}

	// The renewed token is revoked: the fetch fails, the source is told,
	// and the retry uses the token the source gives next.
	srv.accept(third)
	tip = r.commit(map[string]string{"index.html": "three"})
	tg.Wake(ReasonDelivery)
	waitFor(t, "the source told that the renewed token failed", func() bool {
		_, failed := src.state()
		return slices.Contains(failed, renewed)
	})
	src.set(third)
	tg.waitLive(tip)

	found, _ := watch.done()
	if len(found) > 0 {
		t.Errorf("a token in a process's argv: %q", found)
	}
	for _, tok := range []string{first, renewed, third} {
		for _, entry := range tg.logs.All() {
			line := entry.Message
			for k, v := range entry.ContextMap() {
				line += " " + k + "=" + toString(v)
			}
			if strings.Contains(line, tok) {
				t.Errorf("a token in a log line: %s", line)
			}
		}
		filepath.WalkDir(path, func(p string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return nil
			}
			if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(tok)) {
				t.Errorf("a token written to %s", p)
			}
			return nil
		})
	}
	var fetchFailed bool
	for _, entry := range tg.logs.All() {
		if e, ok := entry.ContextMap()["error"].(string); ok && strings.Contains(e, "fetching main") {
			fetchFailed = true
		}
	}
	if !fetchFailed {
		t.Error("no log line says the fetch with the revoked token failed")
	}
}

// TestTokenSourceErrors: a source that cannot give a token fails the fetch
// with an error that says so, and Token with TokenSource, or a TokenSource
// with an http:// remote, is refused by Validate.
func TestTokenSourceErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "site")
	for name, cfg := range map[string]Config{
		"both":        {Path: path, Remote: "https://example.com/o/r.git", Token: "x", TokenSource: &testTokens{}},
		"http remote": {Path: path, Remote: "http://example.com/o/r.git", TokenSource: &testTokens{}},
	} {
		if err := cfg.Validate(); err == nil {
			t.Errorf("%s: Validate accepted it", name)
		}
	}

	g := &git{cacheDir: t.TempDir(), remote: "https://127.0.0.1:1/o/r.git", tokens: &testTokens{next: "bad\ntoken"}}
	_, err := g.runRemote(context.Background(), g.cacheDir, "ls-remote", "--", g.remote)
	if err == nil || !strings.Contains(err.Error(), "getting a token for git: not a token") || strings.Contains(err.Error(), "bad") {
		t.Errorf("error = %v, want one saying the source gave no token, without it", err)
	}
}
