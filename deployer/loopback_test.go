package deployer

import (
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// A forge on the same machine serves git over plain http on a loopback
// address: the token goes to it (it never crosses a network), through the
// credential helper scoped to that host, and the site goes live.
func TestTokenOverHTTPToLoopback(t *testing.T) {
	r := newRemote(t)
	tip := r.commit(map[string]string{"index.html": "from a local forge"})
	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatal(err)
	}
	backend := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + filepath.Dir(r.bare), "GIT_HTTP_EXPORT_ALL=1"},
	}
	var authorized atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if _, pw, ok := req.BasicAuth(); !ok || pw != testToken {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		authorized.Add(1)
		backend.ServeHTTP(w, req)
	}))
	defer srv.Close()
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("test server at %s, not on 127.0.0.1", srv.URL)
	}

	path := filepath.Join(t.TempDir(), "site")
	tg := start(t, Config{Path: path, Remote: srv.URL + "/" + filepath.Base(r.bare), Token: testToken})
	tg.waitLive(tip)
	if got := readCurrent(t, path, "index.html"); got != "from a local forge" {
		t.Fatalf("served %q", got)
	}
	if authorized.Load() == 0 {
		t.Error("no request carried the token")
	}
}
