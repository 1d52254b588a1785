package caddywebhook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/githubapi"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/githubtest"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// previewsCaddyfile is the test site's Caddyfile with previews at
// pr-{number}.preview.test, served by a second site block as in DESIGN's
// example; extra goes into the handler's block.
func (s *testSite) previewsCaddyfile(previews, extra string) string {
	return s.caddyfile("previews pr-{number}.preview.test {\n"+previews+"\n}\n"+extra) + fmt.Sprintf(`
http://*.preview.test:%d {
	root * %s/previews/{host}/current
	header X-Robots-Tag "noindex"
	file_server
}
`, httpPort, s.path)
}

// previewGet fetches path of host's preview from the test Caddy, and
// returns the status and body.
func previewGet(t *testing.T, host, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", httpPort, path), nil)
	req.Host = host
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// sendPullRequest sends a signed pull_request delivery and returns the
// answer's status and body.
func sendPullRequest(t *testing.T, e testkit.PullRequestEvent) (int, string) {
	t.Helper()
	if e.Repo == "" {
		e.Repo = testRepo
	}
	if e.Base == "" {
		e.Base = testBranch
	}
	body, err := testkit.PullRequestPayload(e)
	if err != nil {
		t.Fatal(err)
	}
	status, answer, err := testkit.Delivery{Event: "pull_request", Secret: testSecret, Body: body}.Send(&http.Client{Timeout: 10 * time.Second}, hookURL)
	if err != nil {
		t.Fatal(err)
	}
	return status, answer
}

// waitPreview waits until the preview of number serves commit.
func (s *testSite) waitPreview(number int, commit string) deployer.PreviewStatus {
	s.t.Helper()
	var p deployer.PreviewStatus
	testkit.WaitFor(s.t, time.Minute, fmt.Sprintf("preview %d live at %s", number, commit), func() error {
		for _, q := range s.status().Previews {
			if q.Number == number && q.State == deployer.PreviewLive && q.Live == commit {
				p = q
				return nil
			}
		}
		return fmt.Errorf("previews %+v", s.status().Previews)
	})
	return p
}

// TestPreviewsThroughCaddy: pull_request deliveries, signed, through a real
// Caddy with the two site blocks: a preview serves the pull request's bytes
// at its host while the site serves the branch's; a push updates it; max
// holds ("limit"); the admin API lists and removes previews; on-demand TLS
// is allowed for the hosts of previews that exist only; closing removes
// the folder and the host answers 404. GitHub (the stand-in, validating
// every request) gets exactly one comment on the pull request, however
// many pushes, and the environment pr-<n> ends inactive.
func TestPreviewsThroughCaddy(t *testing.T) {
	s := newTestSite(t)
	srv := startGitHub(t)
	main := s.startLive(s.previewsCaddyfile("max 2", "deployments production "+siteAddress+"\n api_url "+srv.URL()))
	perm := TLSPermission{}

	head := s.repo.PullRequest(7, "change", map[string]string{"index.html": "pull request 7"})
	srv.SetPullRequest(githubtest.PullRequest{Number: 7, Head: head, Base: testBranch})
	if status, answer := sendPullRequest(t, testkit.PullRequestEvent{Number: 7, Action: "opened", Head: head}); status != http.StatusAccepted {
		t.Fatalf("opened: %d %s", status, answer)
	}
	p := s.waitPreview(7, head)
	if code, body := previewGet(t, "pr-7.preview.test", "/index.html"); code != 200 || body != "pull request 7" {
		t.Fatalf("preview answers %d %q", code, body)
	}
	if got := get(t, siteURL+"/index.html"); got != "first" {
		t.Fatalf("site serves %q", got)
	}
	if err := perm.CertificateAllowed(context.Background(), p.Host); err != nil {
		t.Errorf("certificate refused for a live preview's host: %v", err)
	}
	for _, other := range []string{"pr-8.preview.test", "blog.example.com", "evil.test"} {
		if err := perm.CertificateAllowed(context.Background(), other); err == nil {
			t.Errorf("certificate allowed for %s", other)
		}
	}

	head2 := s.repo.PullRequest(7, "change again", map[string]string{"index.html": "pull request 7, pushed again"})
	srv.SetPullRequest(githubtest.PullRequest{Number: 7, Head: head2, Base: testBranch})
	if status, answer := sendPullRequest(t, testkit.PullRequestEvent{Number: 7, Action: "synchronize", Head: head2}); status != http.StatusAccepted {
		t.Fatalf("synchronize: %d %s", status, answer)
	}
	s.waitPreview(7, head2)
	if _, body := previewGet(t, "pr-7.preview.test", "/index.html"); body != "pull request 7, pushed again" {
		t.Fatalf("preview serves %q after a push", body)
	}
	if s.status().Live.Commit != main {
		t.Error("a pull request's push changed the site")
	}

	// Skipped: another action, another base branch.
	for _, e := range []testkit.PullRequestEvent{
		{Number: 7, Action: "assigned", Head: head2},
		{Number: 7, Action: "synchronize", Head: head2, Base: "other"},
	} {
		if status, answer := sendPullRequest(t, e); status != http.StatusOK || !strings.Contains(answer, `"skipped"`) {
			t.Errorf("%s on %q: %d %s", e.Action, e.Base, status, answer)
		}
	}

	// max 2: pull request 8 gets one, 9 none.
	head8 := s.repo.PullRequest(8, "eight", map[string]string{"index.html": "eight"})
	if status, answer := sendPullRequest(t, testkit.PullRequestEvent{Number: 8, Action: "opened", Head: head8}); status != http.StatusAccepted {
		t.Fatalf("pull request 8: %d %s", status, answer)
	}
	head9 := s.repo.PullRequest(9, "nine", map[string]string{"index.html": "nine"})
	if status, answer := sendPullRequest(t, testkit.PullRequestEvent{Number: 9, Action: "opened", Head: head9}); status != http.StatusOK || !strings.Contains(answer, "limit") {
		t.Fatalf("pull request 9 over max: %d %s", status, answer)
	}
	s.waitPreview(8, head8)

	// The admin API lists them, and removes one by hand.
	var list []struct {
		Path     string `json:"path"`
		Previews []struct {
			Number int    `json:"number"`
			Host   string `json:"host"`
			Head   string `json:"head"`
			Live   string `json:"live"`
			State  string `json:"state"`
		} `json:"previews"`
	}
	if code, body := adminDo(t, http.MethodGet, "/github_webhook/deploys", "", &list); code != 200 || len(list) != 1 || len(list[0].Previews) != 2 {
		t.Fatalf("GET deploys: %d %s", code, body)
	}
	if pv := list[0].Previews[0]; pv.Number != 7 || pv.Host != "pr-7.preview.test" || pv.Head != head2 || pv.Live != head2 || pv.State != "live" {
		t.Errorf("preview 7 listed as %+v", pv)
	}
	if code, body := adminDo(t, http.MethodDelete, "/github_webhook/previews", fmt.Sprintf(`{"path": %q, "number": 8}`, s.path), nil); code != 200 {
		t.Fatalf("DELETE preview 8: %d %s", code, body)
	}
	for _, req := range []string{fmt.Sprintf(`{"path": %q, "number": 8}`, s.path), `{"path": "/nowhere", "number": 7}`} {
		if code, body := adminDo(t, http.MethodDelete, "/github_webhook/previews", req, nil); code != 404 {
			t.Errorf("DELETE %s: %d %s, want 404", req, code, body)
		}
	}
	if code, _ := previewGet(t, "pr-8.preview.test", "/index.html"); code != 404 {
		t.Errorf("a removed preview answers %d", code)
	}

	// Closing removes it.
	srv.ClosePullRequest(7)
	if status, answer := sendPullRequest(t, testkit.PullRequestEvent{Number: 7, Action: "closed", Head: head2}); status != http.StatusAccepted {
		t.Fatalf("closed: %d %s", status, answer)
	}
	testkit.WaitFor(t, time.Minute, "the preview's folder removed", func() error {
		if _, err := os.Stat(filepath.Join(s.path, "previews", "pr-7.preview.test")); !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("still there: %v", err)
		}
		return nil
	})
	if code, _ := previewGet(t, "pr-7.preview.test", "/index.html"); code != 404 {
		t.Errorf("a closed pull request's preview answers %d", code)
	}
	if err := perm.CertificateAllowed(context.Background(), p.Host); err == nil {
		t.Error("certificate allowed for a removed preview's host")
	}

	// GitHub: one comment however many pushes, the environment inactive.
	srv.WaitFor(t, "preview 7 reported removed", func() bool {
		for _, d := range srv.Deployments() {
			if d.Environment == githubapi.PreviewEnvironment(7) {
				if st := states(d); len(st) == 0 || st[len(st)-1] != "inactive" {
					return false
				}
			}
		}
		c := srv.Comments(7)
		return len(c) == 1 && strings.Contains(c[0].Body, "removed")
	})
	if c := srv.Comments(7); len(c) != 1 {
		t.Errorf("%d comments on the pull request, want 1", len(c))
	}
	if v := srv.Violations(); len(v) > 0 {
		t.Errorf("requests that GitHub's OpenAPI description refuses: %v", v)
	}
}

// TestPreviewsRestartAndReconcile: after a restart of the configuration
// (Caddy stopping its deployers and starting them again), a live preview
// serves at once, and the reconcile at start removes the preview of a pull
// request that GitHub no longer lists as open (its closed delivery never
// came).
func TestPreviewsRestartAndReconcile(t *testing.T) {
	s := newTestSite(t)
	srv := startGitHub(t)
	config := s.previewsCaddyfile("", "api_url "+srv.URL())
	s.startLive(config)
	heads := map[int]string{}
	for _, n := range []int{3, 4} {
		heads[n] = s.repo.PullRequest(n, "change", map[string]string{"index.html": fmt.Sprint("pull request ", n)})
		srv.SetPullRequest(githubtest.PullRequest{Number: n, Head: heads[n], Base: testBranch})
		if status, answer := sendPullRequest(t, testkit.PullRequestEvent{Number: n, Action: "opened", Head: heads[n]}); status != http.StatusAccepted {
			t.Fatalf("opened %d: %d %s", n, status, answer)
		}
		s.waitPreview(n, heads[n])
	}

	// Stop every deployer, close 4 behind our back, start again.
	if err := loadConfig(emptyConfig); err != nil {
		t.Fatal(err)
	}
	srv.ClosePullRequest(4)
	if err := loadConfig(config); err != nil {
		t.Fatal(err)
	}
	if code, body := previewGet(t, "pr-3.preview.test", "/index.html"); code != 200 || body != "pull request 3" {
		t.Errorf("after a restart preview 3 answers %d %q", code, body)
	}
	testkit.WaitFor(t, time.Minute, "preview 4 reconciled away", func() error {
		if code, _ := previewGet(t, "pr-4.preview.test", "/index.html"); code != 404 {
			return fmt.Errorf("answers %d", code)
		}
		if _, err := os.Stat(filepath.Join(s.path, "previews", "pr-4.preview.test")); !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("folder still there: %v", err)
		}
		return nil
	})
	s.waitPreview(3, heads[3])
	if v := srv.Violations(); len(v) > 0 {
		t.Errorf("requests that GitHub's OpenAPI description refuses: %v", v)
	}
}

// TestPreviewsForkThroughCaddy: with sandbox and forks label, a fork's pull
// request gets nothing until labelled; then exactly the labelled commit is
// served; a later push is not built until labelled again. Its build reads
// neither env values nor the token (nor any of Caddy's variables).
func TestPreviewsForkThroughCaddy(t *testing.T) {
	if _, err := exec.LookPath("bwrap"); err != nil {
		t.Skip("bwrap is not installed; CI installs it: apt-get install bubblewrap")
	}
	s := newTestSite(t)
	srv := startGitHub(t)
	s.startLive(s.previewsCaddyfile("forks label preview", "api_url "+srv.URL()+"\nsandbox\nenv SITE_VALUE value-only-the-site-sees\n"+
		"command sh -c `env > env.txt`"))
	const fork = "someone/hello-world"
	head := s.repo.PullRequest(5, "fork", map[string]string{"index.html": "fork 1"})
	srv.SetPullRequest(githubtest.PullRequest{Number: 5, Head: head, Base: testBranch, HeadRepo: fork})
	if status, answer := sendPullRequest(t, testkit.PullRequestEvent{Number: 5, Action: "opened", Head: head, HeadRepo: fork}); status != http.StatusOK || !strings.Contains(answer, "label") {
		t.Fatalf("an unlabelled fork: %d %s", status, answer)
	}
	if _, err := os.Stat(filepath.Join(s.path, "previews", "pr-5.preview.test")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("an unlabelled fork has a folder: %v", err)
	}
	if status, answer := sendPullRequest(t, testkit.PullRequestEvent{Number: 5, Action: "labeled", Label: "preview", Head: head, HeadRepo: fork}); status != http.StatusAccepted {
		t.Fatalf("labelled: %d %s", status, answer)
	}
	s.waitPreview(5, head)
	if _, body := previewGet(t, "pr-5.preview.test", "/index.html"); body != "fork 1" {
		t.Fatalf("the fork's preview serves %q", body)
	}
	_, env := previewGet(t, "pr-5.preview.test", "/env.txt")
	for _, v := range []string{"value-only-the-site-sees", testToken, testSecret, "CWH_TEST_"} {
		if strings.Contains(env, v) {
			t.Errorf("the fork's build environment holds %q:\n%s", v, env)
		}
	}
	if !strings.Contains(env, "DEPLOY_URL=https://pr-5.preview.test/\n") || !strings.Contains(env, "DEPLOY_PR=5\n") {
		t.Errorf("the fork's build lacks DEPLOY_URL or DEPLOY_PR:\n%s", env)
	}
	if site := get(t, siteURL+"/env.txt"); !strings.Contains(site, "SITE_VALUE=value-only-the-site-sees") {
		t.Errorf("the site's own build lacks its env:\n%s", site)
	}

	head2 := s.repo.PullRequest(5, "fork again", map[string]string{"index.html": "fork 2"})
	if status, answer := sendPullRequest(t, testkit.PullRequestEvent{Number: 5, Action: "synchronize", Head: head2, HeadRepo: fork}); status != http.StatusAccepted {
		t.Fatalf("synchronize: %d %s", status, answer)
	}
	testkit.WaitFor(t, time.Minute, "the push seen and left alone", func() error {
		for _, p := range s.status().Previews {
			if p.Number == 5 && p.State == deployer.PreviewWaiting && p.Head == head2 && p.Live == head {
				return nil
			}
		}
		return fmt.Errorf("previews %+v", s.status().Previews)
	})
	if _, body := previewGet(t, "pr-5.preview.test", "/index.html"); body != "fork 1" {
		t.Fatalf("an unlabelled push went live: %q", body)
	}
	sendPullRequest(t, testkit.PullRequestEvent{Number: 5, Action: "labeled", Label: "preview", Head: head2, HeadRepo: fork})
	s.waitPreview(5, head2)
	if _, body := previewGet(t, "pr-5.preview.test", "/index.html"); body != "fork 2" {
		t.Fatalf("the labelled push serves %q", body)
	}
}

// TestPreviewsRefsPerForge: a GitLab site's previews are fetched from
// GitLab's merge requests' refs (the deployer's TestPreviewRefs fetches
// from there); every other forge's from the default, pull requests' refs.
func TestPreviewsRefsPerForge(t *testing.T) {
	for forge, want := range map[string]string{"": "", "github": "", "gitea": "", "forgejo": "", "gitlab": deployer.MergeRequestRefs} {
		h := Handler{Forge: forge, Previews: &Previews{Host: "pr-{number}.preview.test"}}
		if got := h.previewsConfig().Refs; got != want {
			t.Errorf("forge %q: previews fetched from %q, want %q", forge, got, want)
		}
	}
}
