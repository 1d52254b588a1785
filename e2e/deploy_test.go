package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// hugoCaddyfile serves path/current on port and deploys the Hugo blog in
// remote there.
func hugoCaddyfile(port int, path, remote string) string {
	return siteCaddyfile(port, path, remote, "blog", "command hugo --minify", "publish public", "timeout 1m")
}

// TestHugoSiteDeployedByDelivery runs the Caddy binary with the Hugo blog:
// it deploys at start, answers a ping, refuses a forged delivery, and puts a
// new post live after a signed push delivery, all served by the same process.
func TestHugoSiteDeployedByDelivery(t *testing.T) {
	requireHugo(t)
	const port = 9181
	site := fmt.Sprintf("http://127.0.0.1:%d/", port)
	hook := site + "_github"
	rem := newRemote(t, "hugo-blog")
	first := rem.git(rem.work, "rev-parse", "HEAD")
	path := filepath.Join(t.TempDir(), "blog")
	caddy := startCaddy(t, hugoCaddyfile(port, path, rem.bare), home(t))

	// Start-up deploys the tip on its own.
	waitUntil(t, time.Minute, "the first deploy to go live", func() error {
		return pageShows(site, "Built by hugo from commit <code>"+first[:12]+"</code>")
	})
	if err := pageShows(site+"posts/hello-world/", "Hello, world"); err != nil {
		t.Fatal(err)
	}

	// A ping is answered with what this endpoint deploys.
	code, body := deliver(t, hook, secret, "ping", "e2e-ping", fixture(t, "ping-repo.json", nil))
	if code != http.StatusOK || !strings.Contains(body, `"pong"`) || !strings.Contains(body, "octocat/blog") {
		t.Errorf("ping: %d %s", code, body)
	}

	// A new post, pushed and delivered.
	rem.write("content/posts/second.md", "---\ntitle: A second post\ndate: 2026-02-01T09:00:00Z\n---\nDelivered.\n")
	second := rem.commit("Add a second post")
	payload := pushPayload(t, "octocat/blog", first, second)

	// Signed with another secret: refused, nothing deployed.
	code, body = deliver(t, hook, "not-the-secret", "push", "e2e-forged", payload)
	if code != http.StatusUnauthorized || !strings.Contains(body, "signature mismatch") {
		t.Errorf("forged delivery: %d %s, want 401 signature mismatch", code, body)
	}
	if n := caddy.countLogs("deploying", second); n != 0 {
		t.Fatalf("a forged delivery started %d deploys", n)
	}

	code, body = deliver(t, hook, secret, "push", "e2e-push-1", payload)
	if code != http.StatusAccepted || !strings.Contains(body, `"queued"`) || !strings.Contains(body, "e2e-push-1") {
		t.Fatalf("push: %d %s, want 202 queued naming the delivery", code, body)
	}
	waitUntil(t, time.Minute, "the second post to go live", func() error {
		return pageShows(site, "Built by hugo from commit <code>"+second[:12]+"</code>")
	})
	if err := pageShows(site, "A second post"); err != nil {
		t.Fatal(err)
	}
	st := status(t, path)
	if st.Live == nil || st.Live.Commit != second || st.Last == nil || st.Last.Result != "ok" || st.Last.Reason != "delivery" {
		t.Errorf("status after the delivery: live %+v last %+v", st.Live, st.Last)
	}
	if len(st.Releases) != 2 {
		t.Errorf("releases %v, want the two deployed", st.Releases)
	}
}

// TestFailedBuildLeavesSiteServed pushes a commit that hugo cannot build:
// the site stays as it was, the failure and its output are in the status,
// Redeliver builds it again, and a fix goes live.
func TestFailedBuildLeavesSiteServed(t *testing.T) {
	requireHugo(t)
	const port = 9182
	site := fmt.Sprintf("http://127.0.0.1:%d/", port)
	hook := site + "_github"
	rem := newRemote(t, "hugo-blog")
	first := rem.git(rem.work, "rev-parse", "HEAD")
	path := filepath.Join(t.TempDir(), "blog")
	caddy := startCaddy(t, hugoCaddyfile(port, path, rem.bare), home(t))
	liveMark := "Built by hugo from commit <code>" + first[:12] + "</code>"
	waitUntil(t, time.Minute, "the first deploy to go live", func() error { return pageShows(site, liveMark) })
	liveTarget, err := os.Readlink(filepath.Join(path, "current"))
	if err != nil {
		t.Fatal(err)
	}

	// A template hugo rejects.
	rem.write("layouts/index.html", "{{ define \"main\" }}{{ .Broken \n{{ end }}\n")
	broken := rem.commit("Break the home page template")
	payload := pushPayload(t, "octocat/blog", first, broken)
	if code, body := deliver(t, hook, secret, "push", "e2e-broken", payload); code != http.StatusAccepted {
		t.Fatalf("push: %d %s", code, body)
	}
	waitUntil(t, time.Minute, "the broken build to fail", func() error {
		if caddy.countLogs("deploy failed", broken) == 0 {
			return fmt.Errorf("no failure logged yet")
		}
		return nil
	})
	if err := pageShows(site, liveMark); err != nil {
		t.Errorf("after the failed build: %v", err)
	}
	if got, _ := os.Readlink(filepath.Join(path, "current")); got != liveTarget {
		t.Errorf("current moved from %s to %s", liveTarget, got)
	}
	st := status(t, path)
	if st.Last == nil || st.Last.Result != "error" || st.Last.Commit != broken ||
		!strings.Contains(st.Last.OutputTail, "index.html") {
		t.Errorf("status after the failed build: %+v", st.Last)
	}
	if st.Last != nil && st.Last.Log != "" {
		if log, err := os.ReadFile(st.Last.Log); err != nil || !strings.Contains(string(log), "index.html") {
			t.Errorf("the build log %s: %v\n%s", st.Last.Log, err, log)
		}
	}
	if len(st.Releases) != 1 {
		t.Errorf("releases %v: the failed build was not removed", st.Releases)
	}

	// GitHub's Redeliver sends the same delivery again: it retries the build.
	if code, body := deliver(t, hook, secret, "push", "e2e-broken", payload); code != http.StatusAccepted {
		t.Fatalf("redelivery: %d %s", code, body)
	}
	waitUntil(t, time.Minute, "the redelivered build to fail again", func() error {
		if n := caddy.countLogs("deploy failed", broken); n < 2 {
			return fmt.Errorf("%d failures logged", n)
		}
		return nil
	})
	if err := pageShows(site, liveMark); err != nil {
		t.Errorf("after the second failure: %v", err)
	}

	// The fix goes live.
	copyTree(t, filepath.Join(root, "testdata", "sites", "hugo-blog", "layouts"), filepath.Join(rem.work, "layouts"))
	fixed := rem.commit("Fix the home page template")
	if code, body := deliver(t, hook, secret, "push", "e2e-fixed", pushPayload(t, "octocat/blog", broken, fixed)); code != http.StatusAccepted {
		t.Fatalf("push: %d %s", code, body)
	}
	waitUntil(t, time.Minute, "the fix to go live", func() error {
		return pageShows(site, "Built by hugo from commit <code>"+fixed[:12]+"</code>")
	})
}
