package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/githubtest"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// TestGitHubInTheLoop runs the Caddy binary against a stand-in for GitHub's
// REST API that checks every request against GitHub's OpenAPI description,
// with deployments and require_checks on: a push whose workflow is still
// running waits (the site keeps serving the first commit, and the status
// says which check it waits on), a signed workflow_run delivery after the
// workflow passed puts it live, and GitHub is told, in this order, that the
// deployment of that commit is in progress and then a success, with the
// site's address as environment_url.
func TestGitHubInTheLoop(t *testing.T) {
	const token = "e2e-github-token-0123456789"
	const siteAddress = "https://blog.example.com"
	api := githubtest.Start(t, githubtest.Options{Owner: "octocat", Repo: "site", Token: token})

	s := newSite(t, "site")
	rem := newRemote(t, "html")
	first := rem.Git("rev-parse", "HEAD")
	api.SetWorkflowRuns(first, githubtest.WorkflowRun{Name: "CI", Status: "completed", Conclusion: "success", Event: "push"})
	env := append(home(t), "GITHUB_TOKEN="+token)
	caddy := startCaddy(t, s, s.caddyfile(rem.Bare, "site",
		"token {env.GITHUB_TOKEN}",
		"api_url "+api.URL(),
		"deployments production "+siteAddress,
		"require_checks CI",
	), env)
	s.waitLive(t, first)

	// A push whose workflow still runs: answered 202, and it waits.
	second := rem.Commit("A second version", map[string]string{"index.html": "<h1>second</h1>\n"})
	api.SetWorkflowRuns(second, githubtest.WorkflowRun{Name: "CI", Status: "in_progress", Event: "push"})
	if code, body := deliver(t, s.hook(), secret, "push", "e2e-push", pushPayload(t, "octocat/site", first, second)); code != http.StatusAccepted {
		t.Fatalf("push: %d %s, want 202", code, body)
	}
	waitUntil(t, time.Minute, "the push to wait for its checks", func() error {
		st := s.status(t)
		if c := st.Checked; c == nil || c.Commit != second || c.Outcome != "waiting" || !strings.Contains(c.Detail, `"CI"`) {
			return fmt.Errorf("checked %+v", st.Checked)
		}
		return nil
	})
	if st := s.status(t); st.Live == nil || st.Live.Commit != first {
		t.Fatalf("while its checks run, live is %+v, want the first commit", st.Live)
	}
	if _, body, _ := get(s.url("/index.html")); strings.Contains(body, "second") {
		t.Fatalf("the site serves the second version before its checks passed: %q", body)
	}

	// The workflow passes; GitHub delivers workflow_run.
	api.SetWorkflowRuns(second, githubtest.WorkflowRun{Name: "CI", Status: "completed", Conclusion: "success", Event: "push"})
	run, err := testkit.Fixture("workflow_run-completed.json", func(p map[string]any) {
		p["repository"].(map[string]any)["full_name"] = "octocat/site"
		p["workflow_run"].(map[string]any)["head_branch"] = "main"
		p["workflow_run"].(map[string]any)["head_sha"] = second
	})
	if err != nil {
		t.Fatal(err)
	}
	if code, body := deliver(t, s.hook(), secret, "workflow_run", "e2e-workflow-run", run); code != http.StatusAccepted {
		t.Fatalf("workflow_run: %d %s, want 202", code, body)
	}
	st := s.waitLive(t, second)
	if err := pageShows(s.url("/index.html"), "second"); err != nil {
		t.Fatal(err)
	}

	// GitHub heard of it: a deployment of the full SHA, in progress, then a
	// success linking to the site, sent once current had switched.
	var d githubtest.Deployment
	api.WaitFor(t, "the deployment of the second commit to succeed", func() bool {
		for _, dep := range api.Deployments() {
			if dep.Ref == second && len(dep.Statuses) > 0 && dep.Statuses[len(dep.Statuses)-1].State == "success" {
				d = dep
				return true
			}
		}
		return false
	})
	var states []string
	for _, s := range d.Statuses {
		states = append(states, s.State)
	}
	if !slices.Equal(states, []string{"in_progress", "success"}) || d.Environment != "production" {
		t.Errorf("deployment of %s: environment %q, statuses %v, want production, [in_progress success]", second[:12], d.Environment, states)
	}
	if got := d.Statuses[len(d.Statuses)-1].EnvironmentURL; got != siteAddress {
		t.Errorf("success status environment_url = %q, want %q", got, siteAddress)
	}
	successes := 0
	for _, r := range api.Requests() {
		if r.Operation == "repos/create-deployment-status" && r.Params["deployment_id"] == fmt.Sprint(d.ID) && r.Body["state"] == "success" {
			successes++
			if r.Received.Before(st.Live.At) {
				t.Errorf("the success status reached GitHub at %v, before the site switched at %v", r.Received, st.Live.At)
			}
		}
	}
	if successes != 1 {
		t.Errorf("%d success statuses for the deployment of %s, want 1", successes, second[:12])
	}
	if v := api.TakeViolations(); len(v) > 0 {
		t.Errorf("requests GitHub's API description does not allow: %v", v)
	}
	if errs := caddy.errors(); len(errs) > 0 {
		t.Errorf("Caddy logged errors: %+v", errs)
	}
	if strings.Contains(caddy.Out(), token) {
		t.Error("the token appears in Caddy's output")
	}
}
