package forgeapi

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/forgetest"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/githubapi"
)

// TestChecks: require_checks on each forge waits while a status is
// pending, passes once all succeeded, fails on a failed one; a named check
// not reported yet waits; the reporter's own deploy status never counts;
// every page is read.
func TestChecks(t *testing.T) {
	for _, k := range kinds {
		t.Run(string(k.kind), func(t *testing.T) {
			c, srv, _ := newClient(t, k.kind, "")
			own := "deploy/production"
			if k.kind == Bitbucket {
				own = "deploy-production"
			}
			st := func(name, state string) forgetest.Status { return forgetest.Status{Name: name, State: state} }
			steps := []struct {
				name     string
				statuses []forgetest.Status
				names    []string
				want     githubapi.State
				detail   string
			}{
				{"none yet", nil, nil, githubapi.Pending, "no checks reported yet"},
				{"pending", []forgetest.Status{st("CI", k.pending)}, nil, githubapi.Pending, `"CI" is ` + k.pending},
				{"success", []forgetest.Status{st("CI", k.passed)}, nil, githubapi.Passed, "checks passed"},
				{"failure", []forgetest.Status{st("CI", k.passed), st("lint", k.failed)}, nil, githubapi.Failed, `"lint" failed: ` + k.failed},
				{"named passes, other failed", []forgetest.Status{st("CI", k.passed), st("lint", k.failed)}, []string{"CI"}, githubapi.Passed, "checks passed"},
				{"named missing", []forgetest.Status{st("CI", k.passed)}, []string{"CI", "Link check"}, githubapi.Pending, `check "Link check" not reported yet`},
				{"own deploy status ignored", []forgetest.Status{st("CI", k.passed), st(own, k.failed)}, nil, githubapi.Passed, "checks passed"},
				{"own deploy status alone", []forgetest.Status{st(own, k.passed)}, nil, githubapi.Pending, "no checks reported yet"},
			}
			for _, s := range steps {
				srv.SetStatuses(sha1, s.statuses...)
				v, err := c.Checks(context.Background(), sha1, s.names)
				if err != nil {
					t.Fatalf("%s: %v", s.name, err)
				}
				if v.State != s.want || !strings.Contains(v.String(), s.detail) {
					t.Errorf("%s: %v (%s), want %v (%s)", s.name, v.State, v, s.want, s.detail)
				}
			}

			// 35 statuses, 10 a page: the failed one is on the last page.
			var many []forgetest.Status
			for i := range 34 {
				many = append(many, st(fmt.Sprintf("job %02d", i), k.passed))
			}
			srv.SetStatuses(sha2, append(many, st("late", k.failed))...)
			if v, err := c.Checks(context.Background(), sha2, nil); err != nil || v.State != githubapi.Failed || v.Name != "late" {
				t.Errorf("35 statuses, the last failed: %v, %v; want failed on \"late\"", v, err)
			}
		})
	}
}

// TestGitLabPipelines: a pipeline of the tip that has not finished holds it
// back even before any job reported, as a GitHub check suite does; the
// external pipeline GitLab makes for statuses set through the API does not;
// a failed job whose failure is allowed passes.
func TestGitLabPipelines(t *testing.T) {
	c, srv, _ := newClient(t, GitLab, "")
	srv.SetPipelines(sha1, forgetest.Pipeline{ID: 7, Status: "created"})
	v, err := c.Checks(context.Background(), sha1, nil)
	if err != nil || v.State != githubapi.Pending || v.String() != `pipeline "pipeline #7" is created` {
		t.Fatalf("a created pipeline, no job yet: %v (%s), %v; want pending on pipeline #7", v.State, v, err)
	}
	srv.SetStatuses(sha1, forgetest.Status{Name: "test", State: "success"})
	if v, _ := c.Checks(context.Background(), sha1, []string{"test"}); v.State != githubapi.Passed {
		t.Errorf("named job passed, pipeline running: %v, want passed (a name never waits on a pipeline)", v)
	}
	srv.SetPipelines(sha1, forgetest.Pipeline{ID: 7, Status: "success"}, forgetest.Pipeline{ID: 8, Status: "running", Source: "external"})
	srv.SetStatuses(sha1, forgetest.Status{Name: "test", State: "success"}, forgetest.Status{Name: "flaky", State: "failed", AllowFailure: true})
	if v, _ := c.Checks(context.Background(), sha1, nil); v.State != githubapi.Passed {
		t.Errorf("pipeline passed, external one running, allowed failure: %v (%s), want passed", v.State, v)
	}
}

// TestGiteaShortPages: a Gitea whose MAX_RESPONSE_ITEMS is below the page
// size asked for answers short pages; every one is still read, to the
// count X-Total-Count gives.
func TestGiteaShortPages(t *testing.T) {
	srv := forgetest.Start(t, forgetest.Options{Kind: forgetest.Gitea, Token: token, MaxPage: 3})
	c, err := New(Config{Kind: Gitea, APIURL: srv.URL(), Token: token, Repo: srv.Repo(), Environment: "production"})
	if err != nil {
		t.Fatal(err)
	}
	var statuses []forgetest.Status
	for i := range 7 {
		statuses = append(statuses, forgetest.Status{Name: fmt.Sprintf("job %d", i), State: "success"})
	}
	srv.SetStatuses(sha1, append(statuses, forgetest.Status{Name: "late", State: "failure"})...)
	if v, err := c.Checks(context.Background(), sha1, nil); err != nil || v.State != githubapi.Failed || v.Name != "late" {
		t.Errorf("8 statuses in pages of 3, the last failed: %v, %v; want failed on \"late\"", v, err)
	}
}
