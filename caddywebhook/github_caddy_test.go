package caddywebhook

import (
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/githubapi"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/githubtest"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

const siteAddress = "https://blog.example.com"

// startGitHub starts a stand-in for GitHub's REST API that knows the tests'
// repository, private (requests need testToken), and validates every
// request against GitHub's OpenAPI description.
func startGitHub(t *testing.T) *githubtest.Server {
	owner, name, _ := strings.Cut(testRepo, "/")
	return githubtest.Start(t, githubtest.Options{Owner: owner, Repo: name, Token: testToken})
}

// states returns the states of a deployment's statuses, in order.
func states(d githubtest.Deployment) []string {
	var list []string
	for _, s := range d.Statuses {
		list = append(list, s.State)
	}
	return list
}

// deploymentsOf returns the deployments of commit, oldest first.
func deploymentsOf(srv *githubtest.Server, commit string) []githubtest.Deployment {
	var list []githubtest.Deployment
	for _, d := range srv.Deployments() {
		if d.Ref == commit {
			list = append(list, d)
		}
	}
	return list
}

// waitStates waits until the last deployment of commit has statuses want.
func waitStates(t *testing.T, srv *githubtest.Server, commit string, want ...string) githubtest.Deployment {
	t.Helper()
	var d githubtest.Deployment
	srv.WaitFor(t, fmt.Sprintf("a deployment of %s with statuses %v", commit, want), func() bool {
		list := deploymentsOf(srv, commit)
		if len(list) == 0 {
			return false
		}
		d = list[len(list)-1]
		return slices.Equal(states(d), want)
	})
	return d
}

// statusRequest waits for the request that created the status state on
// deployment d, and returns it. (The stand-in records a request once it
// has answered it: after the deployment shows the status.)
func statusRequest(t *testing.T, srv *githubtest.Server, d githubtest.Deployment, state string) githubtest.Request {
	t.Helper()
	var found githubtest.Request
	srv.WaitFor(t, fmt.Sprintf("the request of the %s status of deployment %d", state, d.ID), func() bool {
		for _, r := range srv.Requests() {
			if r.Operation == "repos/create-deployment-status" && r.Body["state"] == state &&
				r.Params["deployment_id"] == fmt.Sprint(d.ID) {
				found = r
				return true
			}
		}
		return false
	})
	return found
}

// checkNoToken fails the test if Caddy's log holds the token.
func (s *testSite) checkNoToken() {
	s.t.Helper()
	b, err := os.ReadFile(s.log)
	if err != nil {
		s.t.Fatal(err)
	}
	if strings.Contains(string(b), testToken) {
		s.t.Errorf("Caddy's log holds the token")
	}
}

// TestDeploymentsThroughCaddy: with `deployments production <url>`, a deploy
// shows on GitHub as a deployment of the full SHA in environment production,
// in_progress and then success with the site's address, the success sent
// only once current points at the new release; a push deploys and reports
// the same way, and a rollback through the admin API creates a deployment of
// the commit rolled back to, with success.
func TestDeploymentsThroughCaddy(t *testing.T) {
	srv := startGitHub(t)
	s := newTestSite(t)
	first := s.repo.Commit("test commit", map[string]string{"index.html": "first"})
	s.start(s.caddyfile("deployments production " + siteAddress + "\n api_url " + srv.URL()))

	live := s.waitLive(first)
	d := waitStates(t, srv, first, "in_progress", "success")
	if d.Environment != "production" || d.AutoMerge || len(d.RequiredContexts) != 0 || d.Description != "deploy: startup" {
		t.Errorf("deployment %+v: want environment production, auto_merge false, no required contexts, description naming the reason", d)
	}
	if url := d.Statuses[1].EnvironmentURL; url != siteAddress {
		t.Errorf("success status has environment_url %q, want %q", url, siteAddress)
	}
	if got := statusRequest(t, srv, d, "success").Received; got.Before(live.Live.At) {
		t.Errorf("success reached GitHub at %v, before current switched at %v", got, live.Live.At)
	}

	second := s.repo.Commit("test commit", map[string]string{"index.html": "second"})
	status, header, body := send(t, pushCase().withBody(fixture(t, "push-branch.json")))
	pushCase().check(t, status, header, body)
	s.waitLive(second)
	d2 := waitStates(t, srv, second, "in_progress", "success")
	if d2.Description != "deploy: delivery" || d2.Statuses[1].EnvironmentURL != siteAddress {
		t.Errorf("deployment of the push: %+v", d2)
	}

	code, answer := adminDo(t, http.MethodPost, "/github_webhook/rollback", `{"path":"`+s.path+`"}`, nil)
	if code != http.StatusOK {
		t.Fatalf("rollback: %d %s", code, answer)
	}
	srv.WaitFor(t, "a deployment of the commit rolled back to", func() bool { return len(deploymentsOf(srv, first)) == 2 })
	rb := waitStates(t, srv, first, "success")
	if rb.Description != "rollback" || rb.Statuses[0].EnvironmentURL != siteAddress {
		t.Errorf("rollback deployment: %+v", rb)
	}
	if got := get(t, siteURL+"/index.html"); got != "first" {
		t.Errorf("site serves %q after the rollback, want first", got)
	}
	if v := srv.Violations(); len(v) > 0 {
		t.Errorf("requests GitHub's API description does not allow: %v", v)
	}
	s.checkNoToken()
}

// withBody returns c with body.
func (c deliveryCase) withBody(body []byte) deliveryCase {
	c.body = body
	return c
}

// TestDeploymentFailure: a build that fails reports failure with one line
// naming the program and its exit code, never the build's output.
func TestDeploymentFailure(t *testing.T) {
	srv := startGitHub(t)
	s := newTestSite(t)
	first := s.repo.Commit("test commit", map[string]string{"index.html": "first"})
	s.start(s.caddyfile("deployments production " + siteAddress + "\n api_url " + srv.URL() +
		"\n command sh -c `echo OUTPUT-" + testToken[:8] + "-ghp_printed_by_the_build; exit 3`"))

	d := waitStates(t, srv, first, "in_progress", "failure")
	desc := d.Statuses[1].Description
	if desc != "build failed: sh exited 3" {
		t.Errorf("failure description %q, want %q", desc, "build failed: sh exited 3")
	}
	if len([]rune(desc)) > 140 || strings.Contains(desc, "OUTPUT") {
		t.Errorf("failure description %q is longer than 140 characters or holds the build's output", desc)
	}
	if st := s.status(); st.Live != nil || st.Last == nil || st.Last.Result != "error" {
		t.Errorf("status after a failed build: %+v", st)
	}
	s.checkNoToken()
}

// TestDeploymentInterrupted: Caddy stopping during a build reports error on
// the deployment, "interrupted; deploys again on start".
func TestDeploymentInterrupted(t *testing.T) {
	srv := startGitHub(t)
	s := newTestSite(t)
	first := s.repo.Commit("test commit", map[string]string{"index.html": "first"})
	s.start(s.caddyfile("deployments production " + siteAddress + "\n api_url " + srv.URL() + "\n command sleep 60"))
	waitStates(t, srv, first, "in_progress")

	if err := loadConfig(emptyConfig); err != nil {
		t.Fatalf("unloading: %v", err)
	}
	d := waitStates(t, srv, first, "in_progress", "error")
	if got := d.Statuses[1].Description; got != "interrupted; deploys again on start" {
		t.Errorf("error description %q", got)
	}
}

// TestDeploymentsWhileAPIDown: GitHub's API answering 500 and then 403 rate
// limited neither delays nor fails a deploy: the site is live before the
// deployment reaches GitHub, which it does once the rate limit resets; the
// retries are counted in the metric.
func TestDeploymentsWhileAPIDown(t *testing.T) {
	srv := startGitHub(t)
	srv.FailNext(1, githubtest.ServerError)
	srv.FailNext(1, githubtest.RateLimited(time.Now().Add(3*time.Second)))
	s := newTestSite(t)
	first := s.repo.Commit("test commit", map[string]string{"index.html": "first"})
	s.start(s.caddyfile("deployments production " + siteAddress + "\n api_url " + srv.URL()))

	live := s.waitLive(first)
	if got := get(t, siteURL+"/index.html"); got != "first" {
		t.Fatalf("site serves %q, want first", got)
	}
	waitStates(t, srv, first, "in_progress", "success")
	var created githubtest.Request
	srv.WaitFor(t, "the request that created the deployment", func() bool {
		for _, r := range srv.Requests() {
			if r.Operation == "repos/create-deployment" && r.Status == http.StatusCreated {
				created = r
				return true
			}
		}
		return false
	})
	if created.Received.Before(live.Live.At) {
		t.Errorf("the deployment was created (%v) before the site went live (%v): the deploy waited for the API", created.Received, live.Live.At)
	}
	endpoint := regexp.QuoteMeta(githubapi.PathDeployments)
	target := regexp.QuoteMeta(s.path)
	if v := metric(t, `caddy_github_webhook_github_api_requests_total\{endpoint="`+endpoint+`",path="`+target+`",result="retry"\}`); v != "2" {
		t.Errorf("github_api_requests_total deployments retry = %q, want 2", v)
	}
	if v := metric(t, `caddy_github_webhook_github_api_requests_total\{endpoint="`+endpoint+`",path="`+target+`",result="ok"\}`); v != "1" {
		t.Errorf("github_api_requests_total deployments ok = %q, want 1", v)
	}
	s.checkNoToken()
}

// checkDelivery returns a signed delivery of a check event of the tests'
// repository and branch.
func checkDelivery(t *testing.T, event, fixtureName string) deliveryCase {
	return deliveryCase{name: event, event: event, signWith: testSecret,
		body: checkFixture(t, fixtureName, testRepo, testBranch, nil)}
}

// waitChecked waits until the deployer has handled a wake after count, and
// returns what it found.
func (s *testSite) waitChecked(count uint64) deployer.Checked {
	s.t.Helper()
	var c *deployer.Checked
	testkit.WaitFor(s.t, time.Minute, fmt.Sprintf("a wake handled after %d", count), func() error {
		if c = s.status().Checked; c == nil || c.Count <= count {
			return fmt.Errorf("last look: %+v", c)
		}
		return nil
	})
	return *c
}

// TestRequireChecksThroughCaddy: with require_checks, a push whose checks
// are pending stays off the site (the status says it waits, and for which
// check), and goes live on the workflow_run delivery that follows their
// success; a push whose check failed is never deployed, and the status
// names the check and the commit.
func TestRequireChecksThroughCaddy(t *testing.T) {
	srv := startGitHub(t)
	s := newTestSite(t)
	first := s.repo.Commit("test commit", map[string]string{"index.html": "first"})
	srv.SetCheckRuns(first, githubtest.CheckRun{Name: "build", Status: "completed", Conclusion: "success"})
	srv.SetWorkflowRuns(first, githubtest.WorkflowRun{Name: "CI", Status: "completed", Conclusion: "success"})
	s.start(s.caddyfile("require_checks\n api_url " + srv.URL()))
	s.waitLive(first)
	c := s.waitChecked(0)

	// Pending: the push is answered, the tip waits.
	second := s.repo.Commit("test commit", map[string]string{"index.html": "second"})
	srv.SetCheckRuns(second, githubtest.CheckRun{Name: "build", Status: "in_progress"})
	srv.SetWorkflowRuns(second, githubtest.WorkflowRun{Name: "CI", Status: "in_progress"})
	status, header, body := send(t, pushCase().withBody(fixture(t, "push-branch.json")))
	pushCase().check(t, status, header, body)
	c = s.waitChecked(c.Count)
	if c.Outcome != deployer.OutcomeWaiting || c.Commit != second || c.Detail != `check run "build" is in_progress` {
		t.Fatalf("checked = %+v, want waiting for check run build on %s", c, second)
	}
	if got := get(t, siteURL+"/index.html"); got != "first" {
		t.Fatalf("site serves %q while the tip's checks are pending, want first", got)
	}

	// A workflow run that completes, for another branch: skipped.
	other := deliveryCase{event: "workflow_run", signWith: testSecret,
		body: checkFixture(t, "workflow_run-completed.json", testRepo, "feature", nil)}
	status, _, body = send(t, other)
	if status != http.StatusOK || !strings.Contains(string(body), `workflow run on branch \"feature\"`) {
		t.Errorf("workflow_run of another branch: %d %s", status, body)
	}

	// Passed: the workflow_run delivery puts it live.
	srv.SetCheckRuns(second, githubtest.CheckRun{Name: "build", Status: "completed", Conclusion: "success"})
	srv.SetWorkflowRuns(second, githubtest.WorkflowRun{Name: "CI", Status: "completed", Conclusion: "success"})
	status, _, body = send(t, checkDelivery(t, "workflow_run", "workflow_run-completed.json"))
	if status != http.StatusAccepted {
		t.Fatalf("workflow_run delivery: %d %s", status, body)
	}
	s.waitLive(second)
	if got := get(t, siteURL+"/index.html"); got != "second" {
		t.Errorf("site serves %q, want second", got)
	}
	c = s.waitChecked(c.Count)
	if c.Reason != deployer.ReasonChecks || c.Outcome != deployer.OutcomeDeployed {
		t.Errorf("checked = %+v, want deployed for checks", c)
	}

	// Failed: never deployed, the status names the check and the commit.
	third := s.repo.Commit("test commit", map[string]string{"index.html": "third"})
	srv.SetCheckRuns(third, githubtest.CheckRun{Name: "build", Status: "completed", Conclusion: "success"})
	srv.SetWorkflowRuns(third, githubtest.WorkflowRun{Name: "CI", Status: "completed", Conclusion: "failure"})
	status, _, _ = send(t, checkDelivery(t, "check_suite", "check_suite-completed.json"))
	if status != http.StatusAccepted {
		t.Fatalf("check_suite delivery: %d", status)
	}
	c = s.waitChecked(c.Count)
	if c.Outcome != deployer.OutcomeChecksFailed || c.Commit != third || c.Detail != `workflow "CI" failed: failure` {
		t.Fatalf("checked = %+v, want checks_failed naming workflow CI on %s", c, third)
	}
	if got := get(t, siteURL+"/index.html"); got != "second" {
		t.Errorf("site serves %q after the tip's checks failed, want second", got)
	}
	if st := s.status(); st.Live.Commit != second {
		t.Errorf("live %s after the tip's checks failed, want %s", st.Live.Commit, second)
	}
	if v := srv.Violations(); len(v) > 0 {
		t.Errorf("requests GitHub's API description does not allow: %v", v)
	}
	s.checkNoToken()
}

// TestRequireNamedChecks: with names, only those checks count: a status
// context and a workflow that passed let the tip go live although another
// check failed; the checks' names are matched exactly.
func TestRequireNamedChecks(t *testing.T) {
	srv := startGitHub(t)
	s := newTestSite(t)
	first := s.repo.Commit("test commit", map[string]string{"index.html": "first"})
	srv.SetCheckRuns(first, githubtest.CheckRun{Name: "lint", Status: "completed", Conclusion: "failure"})
	srv.SetStatuses(first, githubtest.CommitStatus{Context: "Link check", State: "pending"})
	srv.SetWorkflowRuns(first, githubtest.WorkflowRun{Name: "CI", Status: "completed", Conclusion: "success"})
	s.start(s.caddyfile(`require_checks CI "Link check"` + "\n api_url " + srv.URL()))

	c := s.waitChecked(0)
	if c.Outcome != deployer.OutcomeWaiting || c.Commit != first || c.Detail != `status "Link check" is pending` {
		t.Fatalf("checked = %+v, want waiting for status Link check", c)
	}
	srv.SetStatuses(first, githubtest.CommitStatus{Context: "Link check", State: "success"})
	status, _, body := send(t, checkDelivery(t, "status", "status.json"))
	if status != http.StatusAccepted {
		t.Fatalf("status delivery: %d %s", status, body)
	}
	s.waitLive(first)
}

// TestRequirePinnedChecksThroughCaddy: with require_checks
// CI@app/github-actions, a check run named CI from another app that passed
// does not put the tip live; GitHub Actions' own CI does, on the check_run
// delivery that follows it.
func TestRequirePinnedChecksThroughCaddy(t *testing.T) {
	srv := startGitHub(t)
	s := newTestSite(t)
	first := s.repo.Commit("test commit", map[string]string{"index.html": "first"})
	impostor := githubtest.CheckRun{Name: "CI", Status: "completed", Conclusion: "success", App: "ci-impostor"}
	srv.SetCheckRuns(first, impostor)
	srv.SetStatuses(first, githubtest.CommitStatus{Context: "CI", State: "success"})
	s.start(s.caddyfile("require_checks CI@app/github-actions\n api_url " + srv.URL()))

	c := s.waitChecked(0)
	if c.Outcome != deployer.OutcomeWaiting || c.Commit != first || c.Detail != `check "CI@app/github-actions" not reported yet` {
		t.Fatalf("checked = %+v, want waiting for GitHub Actions' CI", c)
	}
	srv.SetCheckRuns(first, impostor, githubtest.CheckRun{Name: "CI", Status: "completed", Conclusion: "success", App: "github-actions"})
	status, _, body := send(t, checkDelivery(t, "check_run", "check_run-completed.json"))
	if status != http.StatusAccepted {
		t.Fatalf("check_run delivery: %d %s", status, body)
	}
	s.waitLive(first)
}

// TestGitHubLatency measures the time from current switching to the
// success status reaching GitHub's API, for the README's benchmark table
// (go test -run TestGitHubLatency -v ./caddywebhook/).
func TestGitHubLatency(t *testing.T) {
	srv := startGitHub(t)
	s := newTestSite(t)
	first := s.repo.Commit("test commit", map[string]string{"index.html": "0"})
	s.start(s.caddyfile("deployments production " + siteAddress + "\n api_url " + srv.URL()))
	s.waitLive(first)
	waitStates(t, srv, first, "in_progress", "success")

	var lat []time.Duration
	for i := 1; i <= 7; i++ {
		commit := s.repo.Commit("test commit", map[string]string{"index.html": fmt.Sprint(i)})
		send(t, pushCase().withBody(fixture(t, "push-branch.json")))
		st := s.waitLive(commit)
		d := waitStates(t, srv, commit, "in_progress", "success")
		lat = append(lat, statusRequest(t, srv, d, "success").Received.Sub(st.Live.At))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("current switched -> success status at the API: median %v of %d (min %v, max %v)", lat[len(lat)/2], len(lat), lat[0], lat[len(lat)-1])
	for _, l := range lat {
		if l < 0 {
			t.Errorf("a success status reached the API %v before current switched", -l)
		}
	}
}
