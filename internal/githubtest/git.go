package githubtest

import (
	"encoding/pem"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// GitServer serves bare repositories over git's smart HTTP protocol (git
// http-backend behind CGI), on https at 127.0.0.1, as github.com serves a
// private repository to an app: only with basic auth whose user is
// x-access-token and whose password is a current installation token of
// the Server (see App). Anything else is answered 401.
type GitServer struct {
	ts *httptest.Server
	s  *Server

	mu   sync.Mutex
	auth []GitAuth
}

// GitAuth is the password one request to a GitServer carried, and whether
// it was let through.
type GitAuth struct {
	Password string // "" when the request carried none
	Accepted bool
}

// StartGit starts a GitServer for the bare repositories under root (a
// repository root/name.git is at URL()+"/name.git"); it stops when the test
// ends. The server must play an app (Options.App).
func (s *Server) StartGit(t testing.TB, root string) *GitServer {
	t.Helper()
	if s.opts.App == nil {
		t.Fatal("githubtest: StartGit needs Options.App")
	}
	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatalf("githubtest: git --exec-path: %v", err)
	}
	backend := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	g := &GitServer{s: s}
	g.ts = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pw, ok := r.BasicAuth()
		good := ok && user == "x-access-token" && s.CurrentToken(pw)
		g.mu.Lock()
		g.auth = append(g.auth, GitAuth{Password: pw, Accepted: good})
		g.mu.Unlock()
		if !good {
			w.Header().Set("WWW-Authenticate", `Basic realm="GitHub"`)
			http.Error(w, "Invalid username or token.", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(g.ts.Close)
	return g
}

// URL is the server's base URL.
func (g *GitServer) URL() string { return g.ts.URL }

// Auth returns the credentials of every request so far, in order.
func (g *GitServer) Auth() []GitAuth {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]GitAuth(nil), g.auth...)
}

// Trust makes the git processes of the test trust the server's certificate
// (GIT_SSL_CAINFO, set for the test).
func (g *GitServer) Trust(t *testing.T) {
	t.Helper()
	ca := filepath.Join(t.TempDir(), "git-ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: g.ts.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GIT_SSL_CAINFO", ca)
}
