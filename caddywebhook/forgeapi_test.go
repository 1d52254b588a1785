package caddywebhook

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/forgetest"
)

// forgeStates returns the states of the statuses named name created on
// commit, in order.
func forgeStates(srv *forgetest.Server, commit, name string) []string {
	var list []string
	for _, st := range srv.Created() {
		if st.Commit == commit && st.Name == name {
			list = append(list, st.State)
		}
	}
	return list
}

// manualDeploy asks the admin API for a deploy, which looks at the tip's
// checks again.
func (s *testSite) manualDeploy() {
	s.t.Helper()
	if code, body := adminDo(s.t, http.MethodPost, "/github_webhook/deploy", `{"path": "`+s.path+`"}`, nil); code != http.StatusAccepted {
		s.t.Fatalf("POST deploy: %d %s", code, body)
	}
}

// TestForgeStatusesThroughCaddy: on Gitea, Forgejo, GitLab and Bitbucket,
// with deployments and require_checks, a tip whose status is pending waits
// off the site; once it succeeded the tip goes live and the forge gets the
// status deploy/production (Bitbucket: deploy-production), pending then
// success linking the site, with the token as the forge takes it (the
// stand-in refuses anything else); a tip whose status failed never goes
// live; a build that fails is reported as failure. The stand-ins validate
// every request against the forge's documented API.
func TestForgeStatusesThroughCaddy(t *testing.T) {
	for _, tt := range []struct {
		kind                    string
		pending, passed, failed string // a status's states on that forge
		running                 string // the deploy's first state
	}{
		{forgetest.Gitea, "pending", "success", "failure", "pending"},
		{forgetest.Forgejo, "pending", "success", "failure", "pending"},
		{forgetest.GitLab, "running", "success", "failed", "running"},
		{forgetest.Bitbucket, "INPROGRESS", "SUCCESSFUL", "FAILED", "INPROGRESS"},
	} {
		t.Run(tt.kind, func(t *testing.T) {
			srv := forgetest.Start(t, forgetest.Options{Kind: tt.kind, Repo: testRepo, Token: testToken})
			s := newTestSite(t)
			first := s.repo.Commit("test commit", map[string]string{"index.html": "first"})
			srv.SetStatuses(first, forgetest.Status{Name: "CI", State: tt.pending})
			forge := "forge " + tt.kind + " " + srv.BaseURL()
			if tt.kind == forgetest.Bitbucket {
				forge = "forge bitbucket\n api_url " + srv.URL()
			}
			s.start(s.caddyfile(forge + "\n deployments production " + siteAddress +
				"\n require_checks\n command sh -c \"test ! -e fail\""))
			name := "deploy/production"
			if tt.kind == forgetest.Bitbucket {
				name = "deploy-production"
			}

			// Pending: the tip waits, nothing is reported.
			c := s.waitChecked(0)
			if c.Outcome != deployer.OutcomeWaiting || c.Commit != first || c.Detail != fmt.Sprintf(`status "CI" is %s`, tt.pending) &&
				c.Detail != fmt.Sprintf(`job "CI" is %s`, tt.pending) && c.Detail != fmt.Sprintf(`build "CI" is %s`, tt.pending) {
				t.Fatalf("checked = %+v, want waiting on CI", c)
			}
			if got := forgeStates(srv, first, name); len(got) != 0 {
				t.Errorf("statuses %v on a tip that waits, want none", got)
			}

			// Passed: live, reported pending then success with the site.
			srv.SetStatuses(first, forgetest.Status{Name: "CI", State: tt.passed})
			s.manualDeploy()
			s.waitLive(first)
			c = s.waitChecked(c.Count)
			srv.WaitFor(t, "the deploy's statuses", func() bool {
				return slices.Equal(forgeStates(srv, first, name), []string{tt.running, tt.passed})
			})
			for _, st := range srv.Created() {
				if st.State == tt.passed && st.TargetURL != siteAddress {
					t.Errorf("success status links %q, want %q", st.TargetURL, siteAddress)
				}
			}

			// Failed: never live, nothing reported.
			second := s.repo.Commit("test commit", map[string]string{"index.html": "second"})
			srv.SetStatuses(second, forgetest.Status{Name: "CI", State: tt.failed})
			s.manualDeploy()
			c = s.waitChecked(c.Count)
			if c.Outcome != deployer.OutcomeChecksFailed || c.Commit != second {
				t.Fatalf("checked = %+v, want checks_failed on %s", c, second)
			}
			if got := get(t, siteURL+"/index.html"); got != "first" {
				t.Errorf("site serves %q after the tip's checks failed, want first", got)
			}

			// A build that fails: reported as failure.
			third := s.repo.Commit("test commit", map[string]string{"index.html": "third", "fail": "x"})
			srv.SetStatuses(third, forgetest.Status{Name: "CI", State: tt.passed})
			s.manualDeploy()
			srv.WaitFor(t, "the failed deploy's statuses", func() bool {
				return slices.Equal(forgeStates(srv, third, name), []string{tt.running, tt.failed})
			})
			if got := forgeStates(srv, second, name); len(got) != 0 {
				t.Errorf("statuses %v on the tip whose checks failed, want none", got)
			}
			s.checkNoToken()
		})
	}
}

// TestForgeDeploymentsNeedToken: deployments on another forge without a
// token is refused when the configuration loads, naming the forge.
func TestForgeDeploymentsNeedToken(t *testing.T) {
	h := Handler{Forge: "gitea", ForgeURL: "https://git.example.com", Deployments: &Deployments{Environment: "production"}}
	if err := h.validateGitHub(); err == nil || !strings.Contains(err.Error(), "gitea takes commit statuses only from a token") {
		t.Errorf("deployments on gitea without a token: %v", err)
	}
}
