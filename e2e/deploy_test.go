package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
)

// hugoCaddyfile serves the site and deploys the Hugo blog in remote there.
func hugoCaddyfile(s *site, remote string) string {
	return s.caddyfile(remote, "blog", "command hugo --minify", "publish public", "timeout 1m")
}

// TestHugoSiteDeployedByDelivery runs the Caddy binary with the Hugo blog:
// it deploys at start, answers a ping, refuses a forged delivery, and puts a
// new post live after a signed push delivery, all served by the same process.
func TestHugoSiteDeployedByDelivery(t *testing.T) {
	requireHugo(t)
	s := newSite(t, "blog")
	site, hook := s.url("/"), s.hook()
	rem := newRemote(t, "hugo-blog")
	first := rem.Git("rev-parse", "HEAD")
	caddy := startCaddy(t, s, hugoCaddyfile(s, rem.Bare), home(t))

	// Start-up deploys the tip on its own.
	waitUntil(t, time.Minute, "the first deploy to go live", func() error {
		return pageShows(site, "Built by hugo from commit <code>"+first[:12]+"</code>")
	})
	if err := pageShows(site+"posts/hello-world/", "Hello, world"); err != nil {
		t.Fatal(err)
	}
	s.waitLive(t, first)

	// A ping is answered with what this endpoint deploys.
	code, body := deliver(t, hook, secret, "ping", "e2e-ping", fixture(t, "ping-repo.json"))
	if code != http.StatusOK || !strings.Contains(body, `"pong"`) || !strings.Contains(body, "octocat/blog") {
		t.Errorf("ping: %d %s", code, body)
	}

	// A new post, pushed and delivered.
	second := rem.Commit("Add a second post", map[string]string{
		"content/posts/second.md": "---\ntitle: A second post\ndate: 2026-02-01T09:00:00Z\n---\nDelivered.\n",
	})
	payload := pushPayload(t, "octocat/blog", first, second)

	// Signed with another secret: refused, nothing deployed.
	code, body = deliver(t, hook, "not-the-secret", "push", "e2e-forged", payload)
	if code != http.StatusUnauthorized || !strings.Contains(body, "signature mismatch") {
		t.Errorf("forged delivery: %d %s, want 401 signature mismatch", code, body)
	}
	// The handler refuses before it wakes the deployer: the start-up deploy
	// is still the last one, and none runs.
	if st := s.status(t); st.Running != nil || st.Last == nil || st.Last.Reason != "startup" || st.Live == nil || st.Live.Commit != first {
		t.Fatalf("after the forged delivery: running %+v, last %+v, live %+v", st.Running, st.Last, st.Live)
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
	st := s.waitLive(t, second)
	if st.Live == nil || st.Live.Commit != second || st.Last == nil || st.Last.Result != "ok" || st.Last.Reason != "delivery" {
		t.Errorf("status after the delivery: live %+v last %+v", st.Live, st.Last)
	}
	if len(st.Releases) != 2 {
		t.Errorf("releases %v, want the two deployed", st.Releases)
	}
	if errs := caddy.errors(); len(errs) > 0 {
		t.Errorf("the handler logged errors: %+v", errs)
	}
}

// TestFailedBuildLeavesSiteServed pushes a commit that hugo cannot build:
// the site stays as it was, the failure and its output are in the status,
// Redeliver builds it again, and a fix goes live.
func TestFailedBuildLeavesSiteServed(t *testing.T) {
	requireHugo(t)
	s := newSite(t, "blog")
	site, hook := s.url("/"), s.hook()
	rem := newRemote(t, "hugo-blog")
	first := rem.Git("rev-parse", "HEAD")
	startCaddy(t, s, hugoCaddyfile(s, rem.Bare), home(t))
	liveMark := "Built by hugo from commit <code>" + first[:12] + "</code>"
	waitUntil(t, time.Minute, "the first deploy to go live", func() error { return pageShows(site, liveMark) })
	liveTarget, err := os.Readlink(filepath.Join(s.path, "current"))
	if err != nil {
		t.Fatal(err)
	}

	// A template hugo rejects.
	broken := rem.Commit("Break the home page template", map[string]string{
		"layouts/index.html": "{{ define \"main\" }}{{ .Broken \n{{ end }}\n",
	})
	payload := pushPayload(t, "octocat/blog", first, broken)
	if code, body := deliver(t, hook, secret, "push", "e2e-broken", payload); code != http.StatusAccepted {
		t.Fatalf("push: %d %s", code, body)
	}
	st := s.waitFailed(t, broken, time.Time{})
	if err := pageShows(site, liveMark); err != nil {
		t.Errorf("after the failed build: %v", err)
	}
	if got, _ := os.Readlink(filepath.Join(s.path, "current")); got != liveTarget {
		t.Errorf("current moved from %s to %s", liveTarget, got)
	}
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
	s.waitFailed(t, broken, st.Last.At)
	if err := pageShows(site, liveMark); err != nil {
		t.Errorf("after the second failure: %v", err)
	}

	// The fix goes live.
	rem.CopyFrom(filepath.Join(root, "testdata", "sites", "hugo-blog"))
	fixed := rem.Commit("Fix the home page template", nil)
	if code, body := deliver(t, hook, secret, "push", "e2e-fixed", pushPayload(t, "octocat/blog", broken, fixed)); code != http.StatusAccepted {
		t.Fatalf("push: %d %s", code, body)
	}
	waitUntil(t, time.Minute, "the fix to go live", func() error {
		return pageShows(site, "Built by hugo from commit <code>"+fixed[:12]+"</code>")
	})
}

// waitFailed waits until the last deploy is a failure to build commit that
// ended after since, and no deploy runs; it returns the status then.
func (s *site) waitFailed(t *testing.T, commit string, since time.Time) deployer.Status {
	t.Helper()
	var st deployer.Status
	waitUntil(t, time.Minute, "the build of "+commit[:12]+" to fail", func() error {
		st = s.status(t)
		if st.Running != nil || st.Last == nil || st.Last.Result != "error" || st.Last.Commit != commit || !st.Last.At.After(since) {
			return fmt.Errorf("running %+v, last %+v", st.Running, st.Last)
		}
		return nil
	})
	return st
}
