//go:build unix

package caddywebhook

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// TestFIFONeverServed: a build that leaves a FIFO in what goes live fails
// its deploy, naming the FIFO; file_server keeps serving the last good
// release, and a GET of the FIFO's path is answered 404 at once. On main
// the FIFO went live and each GET of it pinned one of Caddy's goroutines in
// open(2) until a writer came, which none did (some 10,000 such GETs and
// Caddy answered nothing, admin API included).
func TestFIFONeverServed(t *testing.T) {
	s := newTestSite(t)
	first := s.startLive(s.caddyfile("command sh -c `if [ -e make-fifo ]; then mkfifo pipe; fi`"))
	// Should a FIFO go live (on main), a writer that opens it lets the
	// GET that waits in open(2) end, so that Caddy can unload the test's
	// configuration.
	t.Cleanup(func() {
		if fd, err := syscall.Open(filepath.Join(s.path, "current", "pipe"), syscall.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			syscall.Close(fd)
		}
	})

	tip := s.repo.Commit("a build that makes a FIFO", map[string]string{"index.html": "second", "make-fifo": ""})
	pushDelivery(t, testSecret)
	var st deployer.Status
	testkit.WaitFor(t, time.Minute, "the deploy of the FIFO's commit to end", func() error {
		if st = s.status(); st.Running != nil || st.Last == nil || st.Last.Commit != tip {
			return os.ErrNotExist
		}
		return nil
	})
	if want := `"pipe" (FIFO) cannot go live`; st.Last.Result != "error" || !strings.Contains(st.Last.Error, want) {
		t.Errorf("the deploy of %s: %s %q, want an error saying %q", tip, st.Last.Result, st.Last.Error, want)
	}
	if st.Live == nil || st.Live.Commit != first {
		t.Errorf("live %+v, want %s", st.Live, first)
	}

	client := &http.Client{Timeout: 5 * time.Second}
	began := time.Now()
	resp, err := client.Get(siteURL + "/pipe")
	if err != nil {
		t.Fatalf("GET /pipe did not end in %v: %v", time.Since(began).Round(time.Millisecond), err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /pipe: %s, want 404", resp.Status)
	}
	if got := get(t, siteURL+"/index.html"); got != "first" {
		t.Errorf("site serves %q, want the last good release's first", got)
	}
}
