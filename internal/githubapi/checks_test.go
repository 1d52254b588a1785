package githubapi

import (
	"context"
	"strings"
	"testing"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/githubtest"
)

func run(name, status, conclusion string) githubtest.CheckRun {
	return githubtest.CheckRun{Name: name, Status: status, Conclusion: conclusion}
}

func ok(name string) githubtest.CheckRun { return run(name, "completed", "success") }

// TestChecks checks the verdicts the deployer acts on, with two items per
// page so that every list spans pages.
func TestChecks(t *testing.T) {
	fiveGood := []githubtest.CheckRun{ok("build"), ok("test"), run("docs", "completed", "neutral"), run("e2e", "completed", "skipped"), ok("lint")}
	tests := []struct {
		name      string
		runs      []githubtest.CheckRun
		statuses  []githubtest.CommitStatus
		workflows []githubtest.WorkflowRun
		names     []string
		want      Verdict
		wantText  string
	}{
		{name: "nothing reported yet", want: Verdict{State: Pending, Conclusion: "missing"}, wantText: "no checks reported yet"},
		{name: "all five pass across three pages", runs: fiveGood, want: Verdict{State: Passed}, wantText: "checks passed"},
		{
			name: "a failure on the last page", runs: append(fiveGood[:4:4], run("lint", "completed", "failure")),
			want: Verdict{State: Failed, Kind: KindCheckRun, Name: "lint", Conclusion: "failure"}, wantText: `check run "lint" failed: failure`,
		},
		{
			name: "one still running", runs: []githubtest.CheckRun{ok("build"), run("test", "in_progress", "")},
			want: Verdict{State: Pending, Kind: KindCheckRun, Name: "test", Conclusion: "in_progress"}, wantText: `check run "test" is in_progress`,
		},
		{
			name: "failure wins over pending", runs: []githubtest.CheckRun{run("a", "queued", ""), run("b", "completed", "timed_out")},
			want: Verdict{State: Failed, Kind: KindCheckRun, Name: "b", Conclusion: "timed_out"},
		},
		{
			name: "named check passes while another fails", runs: []githubtest.CheckRun{ok("build"), run("flaky", "completed", "failure")},
			names: []string{"build"}, want: Verdict{State: Passed},
		},
		{
			name: "named check not reported yet", runs: fiveGood, names: []string{"build", "Link check"},
			want: Verdict{State: Pending, Name: "Link check", Conclusion: "missing"}, wantText: `check "Link check" not reported yet`,
		},
		{
			name: "status context failed", runs: fiveGood,
			statuses: []githubtest.CommitStatus{{Context: "ci/a", State: "success"}, {Context: "ci/b", State: "success"}, {Context: "ci/netlify", State: "error"}},
			want:     Verdict{State: Failed, Kind: KindStatus, Name: "ci/netlify", Conclusion: "error"}, wantText: `status "ci/netlify" failed: error`,
		},
		{
			name: "named status context pending", statuses: []githubtest.CommitStatus{{Context: "ci/a", State: "success"}, {Context: "ci/b", State: "success"}, {Context: "deploy/preview", State: "pending"}},
			names: []string{"deploy/preview"}, want: Verdict{State: Pending, Kind: KindStatus, Name: "deploy/preview", Conclusion: "pending"},
		},
		{
			name: "workflow named: passes", runs: []githubtest.CheckRun{ok("build"), ok("test")},
			workflows: []githubtest.WorkflowRun{{Name: "CI", Status: "completed", Conclusion: "success"}, {Name: "Other", Status: "completed", Conclusion: "failure"}, {Name: "Third", Status: "queued"}},
			names:     []string{"CI"}, want: Verdict{State: Passed},
		},
		{
			name: "workflow named: failed", runs: []githubtest.CheckRun{ok("build")},
			workflows: []githubtest.WorkflowRun{{Name: "CI", Status: "completed", Conclusion: "startup_failure"}},
			names:     []string{"CI"}, want: Verdict{State: Failed, Kind: KindWorkflow, Name: "CI", Conclusion: "startup_failure"},
		},
		{
			name: "workflow queued before any check run exists", statuses: []githubtest.CommitStatus{{Context: "ci/a", State: "success"}},
			workflows: []githubtest.WorkflowRun{{Name: "CI", Status: "queued"}},
			want:      Verdict{State: Pending, Kind: KindWorkflow, Name: "CI", Conclusion: "queued"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := setup(t, githubtest.Options{Token: token}, "")
			e.client.perPage = 2
			e.srv.SetCheckRuns(shaA, tt.runs...)
			e.srv.SetStatuses(shaA, tt.statuses...)
			e.srv.SetWorkflowRuns(shaA, tt.workflows...)
			e.srv.SetWorkflowRuns(shaB, githubtest.WorkflowRun{Name: "CI", Status: "completed", Conclusion: "failure"}) // another commit's

			got, err := e.client.Checks(context.Background(), shaA, tt.names)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Checks = %+v, want %+v", got, tt.want)
			}
			if tt.wantText != "" && got.String() != tt.wantText {
				t.Errorf("String = %q, want %q", got.String(), tt.wantText)
			}
			pages := 0
			for _, req := range e.srv.Requests() {
				if req.Operation == "checks/list-for-ref" {
					pages++
				}
				if req.Operation == "actions/list-workflow-runs-for-repo" && req.Query.Get("head_sha") != shaA {
					t.Errorf("workflow runs asked with head_sha %q, want %s", req.Query.Get("head_sha"), shaA)
				}
			}
			if want := max(1, (len(tt.runs)+1)/2); pages != want {
				t.Errorf("%d pages of check runs read, want %d", pages, want)
			}
		})
	}
}

// TestJudge checks every conclusion and state GitHub documents.
func TestJudge(t *testing.T) {
	for _, c := range []string{"success", "neutral", "skipped"} {
		if s, _ := judgeRun("completed", c); s != Passed {
			t.Errorf("%s: %v, want passed", c, s)
		}
	}
	for _, c := range []string{"failure", "cancelled", "timed_out", "action_required", "startup_failure", "stale", ""} {
		if s, _ := judgeRun("completed", c); s != Failed {
			t.Errorf("%s: %v, want failed", c, s)
		}
	}
	for _, st := range []string{"queued", "in_progress", "waiting", "requested", "pending"} {
		if s, _ := judgeRun(st, ""); s != Pending {
			t.Errorf("status %s: %v, want pending", st, s)
		}
	}
	for state, want := range map[string]State{"success": Passed, "pending": Pending, "failure": Failed, "error": Failed} {
		if s := judgeStatus(state); s != want {
			t.Errorf("status state %s: %v, want %v", state, s, want)
		}
	}
}

// TestChecksPublicRepository checks that a public repository's checks are
// read without a token, and that a private one answers 404 without it.
func TestChecksPublicRepository(t *testing.T) {
	e := setup(t, githubtest.Options{}, "-")
	e.srv.SetCheckRuns(shaA, ok("build"))
	got, err := e.client.Checks(context.Background(), shaA, nil)
	if err != nil || got.State != Passed {
		t.Fatalf("Checks = %+v, %v; want passed", got, err)
	}
	for _, req := range e.srv.Requests() {
		if req.Header.Get("Authorization") != "" {
			t.Errorf("%s %s sent Authorization without a token", req.Method, req.Path)
		}
	}

	private := setup(t, githubtest.Options{Token: token}, "-")
	_, err = private.client.Checks(context.Background(), shaA, nil)
	if err == nil || !strings.Contains(err.Error(), "GET /repos/{owner}/{repo}/commits/{ref}/check-runs: 404 Not Found") {
		t.Errorf("Checks on a private repository without a token = %v, want the endpoint and 404 named", err)
	}
	if private.counts.get(PathCheckRuns, ResultError) != 1 {
		t.Errorf("counts = %s, want one error", private.counts)
	}
}

// TestChecksUnreadable checks what happens when the token may not read a
// kind of check: a fine-grained token cannot be given the Checks permission,
// so GitHub answers 403 to the check runs of a private repository.
func TestChecksUnreadable(t *testing.T) {
	e := setup(t, githubtest.Options{Token: token}, "")
	e.srv.Deny("checks/list-for-ref")
	e.srv.SetCheckRuns(shaA, ok("build"))
	e.srv.SetWorkflowRuns(shaA, githubtest.WorkflowRun{Name: "CI", Status: "completed", Conclusion: "success"})
	e.srv.SetStatuses(shaA, githubtest.CommitStatus{Context: "ci/netlify", State: "failure"})

	// Named workflows and statuses are still judged.
	v, err := e.client.Checks(context.Background(), shaA, []string{"CI"})
	if err != nil || v.State != Passed || v.Unread != "check runs" {
		t.Errorf("Checks(CI) = %+v, %v; want passed with check runs unread", v, err)
	}
	v, err = e.client.Checks(context.Background(), shaA, []string{"CI", "ci/netlify"})
	if err != nil || v.State != Failed || v.Name != "ci/netlify" {
		t.Errorf("Checks(CI, ci/netlify) = %+v, %v; want the failed status", v, err)
	}
	// A job name cannot be seen: pending, and the verdict says why.
	v, err = e.client.Checks(context.Background(), shaA, []string{"build"})
	if err != nil || v.State != Pending || v.String() != `check "build" not found (the token cannot read check runs)` {
		t.Errorf("Checks(build) = %+v (%q), %v; want pending, naming the unread check runs", v, v.String(), err)
	}
	// Without names, "all of them" cannot be known: an error, never a pass.
	_, err = e.client.Checks(context.Background(), shaA, nil)
	if err == nil || !strings.Contains(err.Error(), "403 Forbidden: Resource not accessible by personal access token (the token may not read check runs") {
		t.Errorf("Checks() = %v, want the 403 explained", err)
	}
}

// TestChecksPinnedSource: a required check can name where it must come
// from, as branch protection pins a check to an app. A check run named CI
// from another app, a status context named CI or a workflow named CI from
// another file then does not satisfy it, whatever it says; the one from the
// named source does.
func TestChecksPinnedSource(t *testing.T) {
	impostor := githubtest.CheckRun{Name: "CI", Status: "completed", Conclusion: "success", App: "ci-impostor"}
	actions := func(status, conclusion string) githubtest.CheckRun {
		return githubtest.CheckRun{Name: "CI", Status: status, Conclusion: conclusion, App: "github-actions"}
	}
	ciYML := func(status, conclusion, path string) githubtest.WorkflowRun {
		return githubtest.WorkflowRun{Name: "CI", Status: status, Conclusion: conclusion, Path: path}
	}
	tests := []struct {
		name      string
		runs      []githubtest.CheckRun
		statuses  []githubtest.CommitStatus
		workflows []githubtest.WorkflowRun
		require   string
		want      Verdict
		wantText  string
	}{
		{
			name: "another app's CI alone", runs: []githubtest.CheckRun{impostor},
			statuses: []githubtest.CommitStatus{{Context: "CI", State: "success"}},
			require:  "CI@app/github-actions",
			want:     Verdict{State: Pending, Name: "CI@app/github-actions", Conclusion: "missing"}, wantText: `check "CI@app/github-actions" not reported yet`,
		},
		{
			name: "another app's CI passed, the app's is running", runs: []githubtest.CheckRun{impostor, actions("in_progress", "")},
			require: "CI@app/github-actions",
			want:    Verdict{State: Pending, Kind: KindCheckRun, Name: "CI", Conclusion: "in_progress"},
		},
		{
			name: "another app's CI failed, the app's passed", runs: []githubtest.CheckRun{{Name: "CI", Status: "completed", Conclusion: "failure", App: "ci-impostor"}, actions("completed", "success")},
			require: "CI@app/github-actions", want: Verdict{State: Passed},
		},
		{
			name: "a workflow named CI from another file", workflows: []githubtest.WorkflowRun{ciYML("completed", "success", ".github/workflows/fake.yml")},
			runs: []githubtest.CheckRun{impostor}, require: "CI@.github/workflows/ci.yml",
			want: Verdict{State: Pending, Name: "CI@.github/workflows/ci.yml", Conclusion: "missing"},
		},
		{
			name: "the workflow file's run, path with its ref", workflows: []githubtest.WorkflowRun{ciYML("completed", "success", ".github/workflows/ci.yml@main"), ciYML("completed", "failure", ".github/workflows/fake.yml")},
			require: "CI@.github/workflows/ci.yml", want: Verdict{State: Passed},
		},
		{
			name: "the workflow file's run failed", workflows: []githubtest.WorkflowRun{ciYML("completed", "failure", ".github/workflows/ci.yml")},
			runs: []githubtest.CheckRun{actions("completed", "success")}, require: "CI@.github/workflows/ci.yml",
			want: Verdict{State: Failed, Kind: KindWorkflow, Name: "CI", Conclusion: "failure"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := setup(t, githubtest.Options{Token: token}, "")
			e.srv.SetCheckRuns(shaA, tt.runs...)
			e.srv.SetStatuses(shaA, tt.statuses...)
			e.srv.SetWorkflowRuns(shaA, tt.workflows...)
			got, err := e.client.Checks(context.Background(), shaA, []string{tt.require})
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Checks(%q) = %+v, want %+v", tt.require, got, tt.want)
			}
			if tt.wantText != "" && got.String() != tt.wantText {
				t.Errorf("String = %q, want %q", got.String(), tt.wantText)
			}
		})
	}
}

// TestChecksWaitForSuites: without names, the first check to report does
// not let a commit through. A CLA bot's status passed within a second of the
// push, while the check suite GitHub created for GitHub Actions at push time
// has no run yet: the commit waits for the suite, and passes once its runs
// succeeded; a suite that failed fails it.
func TestChecksWaitForSuites(t *testing.T) {
	e := setup(t, githubtest.Options{Token: token}, "")
	e.client.perPage = 1 // suites span pages
	cla := githubtest.CommitStatus{Context: "license/cla", State: "success"}
	e.srv.SetStatuses(shaA, cla)
	e.srv.SetCheckSuites(shaA, githubtest.CheckSuite{App: "github-actions", Status: "queued"})

	v, err := e.client.Checks(context.Background(), shaA, nil)
	want := Verdict{State: Pending, Kind: KindCheckSuite, Name: "github-actions", Conclusion: "queued"}
	if err != nil || v != want || v.String() != `check suite "github-actions" is queued` {
		t.Fatalf("Checks with a passed status and a queued suite = %+v (%q), %v; want %+v", v, v.String(), err, want)
	}

	e.srv.SetCheckRuns(shaA, ok("build"), ok("test"))
	e.srv.SetWorkflowRuns(shaA, githubtest.WorkflowRun{Name: "CI", Status: "completed", Conclusion: "success"})
	if v, err := e.client.Checks(context.Background(), shaA, nil); err != nil || v.State != Passed {
		t.Fatalf("Checks once the suite's runs passed = %+v, %v; want passed", v, err)
	}

	e.srv.SetCheckSuites(shaB, githubtest.CheckSuite{App: "github-actions", Status: "queued"}, githubtest.CheckSuite{App: "octocoders-linter", Status: "completed", Conclusion: "failure"})
	e.srv.SetStatuses(shaB, cla)
	v, err = e.client.Checks(context.Background(), shaB, nil)
	want = Verdict{State: Failed, Kind: KindCheckSuite, Name: "octocoders-linter", Conclusion: "failure"}
	if err != nil || v != want {
		t.Errorf("Checks with a failed suite = %+v, %v; want %+v", v, err, want)
	}
	// Named checks are judged without the suites.
	if v, err := e.client.Checks(context.Background(), shaB, []string{"license/cla"}); err != nil || v.State != Passed {
		t.Errorf("Checks(license/cla) = %+v, %v; want passed", v, err)
	}
}

func TestParseRequirement(t *testing.T) {
	tests := []struct {
		in   string
		want Requirement
		err  string
	}{
		{in: "CI", want: Requirement{Name: "CI"}},
		{in: "Link check", want: Requirement{Name: "Link check"}},
		{in: "CI@app/github-actions", want: Requirement{Name: "CI", App: "github-actions"}},
		{in: "build (ubuntu, 1.26)@app/github-actions", want: Requirement{Name: "build (ubuntu, 1.26)", App: "github-actions"}},
		{in: "CI@.github/workflows/ci.yml", want: Requirement{Name: "CI", Workflow: ".github/workflows/ci.yml"}},
		{in: "a@b@app/x", want: Requirement{Name: "a@b", App: "x"}},
		{in: "deploy@production", want: Requirement{Name: "deploy@production"}},
		{in: "CI@app/GitHub Actions", err: "not a GitHub App's slug"},
		{in: "CI@app/", err: "not a GitHub App's slug"},
		{in: "@app/github-actions", err: "no check name"},
		{in: "CI@.github/workflows/../ci.yml", err: "not a workflow file"},
		{in: "CI@.github/workflows/ci.json", err: "not a workflow file"},
		{in: "CI@.github/workflows/.yml", err: "not a workflow file"},
		{in: " ", err: "empty"},
	}
	for _, tt := range tests {
		got, err := ParseRequirement(tt.in)
		switch {
		case tt.err != "":
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseRequirement(%q) = %+v, %v; want error %q", tt.in, got, err, tt.err)
			}
		case err != nil || got != tt.want:
			t.Errorf("ParseRequirement(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		case got.String() != tt.in:
			t.Errorf("%+v.String() = %q, want %q", got, got.String(), tt.in)
		}
	}
}
