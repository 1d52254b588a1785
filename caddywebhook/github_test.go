package caddywebhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// TestValidateGitHub: the configuration errors of deployments,
// require_checks and api_url, as `caddy validate` or a reload reports them.
func TestValidateGitHub(t *testing.T) {
	base := func(edit func(h *Handler)) *Handler {
		h := &Handler{Repo: "octocat/blog", Secret: []string{"s"}, Path: "/srv/blog", Token: "{env.GITHUB_TOKEN}"}
		edit(h)
		return h
	}
	for _, tc := range []struct {
		name string
		h    *Handler
		err  string // a part of the error; none when empty
	}{
		{name: "deployments with token", h: base(func(h *Handler) {
			h.Deployments = &Deployments{Environment: "production", URL: "https://blog.example.com"}
		})},
		{name: "deployments without token", h: base(func(h *Handler) {
			h.Token = ""
			h.Deployments = &Deployments{Environment: "production"}
		}), err: "deployments needs token"},
		{name: "deployments without environment", h: base(func(h *Handler) {
			h.Deployments = &Deployments{URL: "https://blog.example.com"}
		}), err: "environment is required"},
		{name: "deployments url not http", h: base(func(h *Handler) {
			h.Deployments = &Deployments{Environment: "production", URL: "blog.example.com"}
		}), err: "not an http or https URL"},
		{name: "require_checks without token", h: base(func(h *Handler) {
			h.Token = ""
			h.RequireChecks = &RequireChecks{}
		})},
		{name: "require_checks named twice", h: base(func(h *Handler) {
			h.RequireChecks = &RequireChecks{Names: []string{"CI", "CI"}}
		}), err: `"CI" is named twice`},
		{name: "require_checks empty name", h: base(func(h *Handler) {
			h.RequireChecks = &RequireChecks{Names: []string{" "}}
		}), err: "name 1 is empty"},
		{name: "require_checks pinned", h: base(func(h *Handler) {
			h.RequireChecks = &RequireChecks{Names: []string{"CI@app/github-actions", "CI@.github/workflows/ci.yml", "license/cla"}}
		})},
		{name: "require_checks app not a slug", h: base(func(h *Handler) {
			h.RequireChecks = &RequireChecks{Names: []string{"CI@app/GitHub Actions"}}
		}), err: `require_checks: "CI@app/GitHub Actions": "GitHub Actions" is not a GitHub App's slug`},
		{name: "require_checks workflow not a workflow file", h: base(func(h *Handler) {
			h.RequireChecks = &RequireChecks{Names: []string{"CI@.github/workflows/ci"}}
		}), err: "is not a workflow file"},
		{name: "api_url of GitHub Enterprise Server", h: base(func(h *Handler) {
			h.APIURL = "https://ghe.example.com/api/v3"
		})},
		{name: "api_url over http to loopback", h: base(func(h *Handler) { h.APIURL = "http://127.0.0.1:8080/" })},
		{name: "api_url over http with a token", h: base(func(h *Handler) {
			h.APIURL = "http://ghe.example.com/api/v3"
		}), err: "token needs an https api_url"},
		{name: "api_url with credentials", h: base(func(h *Handler) {
			h.APIURL = "https://user:pass@ghe.example.com/api/v3"
		}), err: "must not carry credentials"},
		{name: "api_url not a URL", h: base(func(h *Handler) { h.APIURL = "ghe" }), err: "is not a URL"},
		{name: "api_url ftp", h: base(func(h *Handler) { h.APIURL = "ftp://ghe.example.com/" }), err: "want https"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.h.validateGitHub()
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("error %v, want none", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one with %q", err, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), "pass") {
				t.Errorf("error %q quotes the credentials", err)
			}
		})
	}
}

// TestFailureSummary: a failed deploy's status on GitHub is one line that
// names the step, never the build's output or the command's arguments.
func TestFailureSummary(t *testing.T) {
	exit1 := exec.Command("sh", "-c", "exit 3").Run()
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"exit code", &deployer.BuildError{Command: "/usr/local/bin/hugo --minify --baseURL https://secret@x", ExitCode: 3,
			Tail: "Error: token ghp_leaked", Err: exit1}, "build failed: hugo exited 3"},
		{"timeout", &deployer.BuildError{Command: "npm run build", ExitCode: -1,
			Err: fmt.Errorf("killed after the deploy timeout: %w", context.DeadlineExceeded)}, "build failed: npm ran past the deploy timeout"},
		{"not found", &deployer.BuildError{Command: "zola build", ExitCode: -1, Err: &fs.PathError{Op: "fork/exec", Path: "zola", Err: fs.ErrNotExist}},
			"build failed: zola not found"},
		{"killed", &deployer.BuildError{Command: "make", ExitCode: -1, Err: errors.New("signal: killed")}, "build failed: make was killed"},
		{"wrapped", fmt.Errorf("deploying: %w", &deployer.BuildError{Command: "jekyll build", ExitCode: 1, Err: exit1}),
			"build failed: jekyll exited 1"},
		{"publish", errors.New(`publish folder "public" does not exist after the build`),
			`deploy failed: publish folder "public" does not exist after the build`},
		{"several lines", errors.New("checking out 1a2b: git failed\nfatal: details\nmore"), "deploy failed: checking out 1a2b: git failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := failureSummary(tc.err)
			if got != tc.want {
				t.Errorf("summary %q, want %q", got, tc.want)
			}
			if len([]rune(got)) > 140 || strings.ContainsAny(got, "\n\r") {
				t.Errorf("summary %q is not one line of at most 140 characters", got)
			}
		})
	}
	long := failureSummary(errors.New(strings.Repeat("word ", 100)))
	if n := len([]rune(long)); n > 140 {
		t.Errorf("summary of a long error has %d characters", n)
	}
}

// checkFixture returns the payload of a check event, with its repository
// and branch set as a test needs.
func checkFixture(t *testing.T, name, repo, branch string, edit func(p map[string]any)) []byte {
	t.Helper()
	b, err := testkit.Fixture(name, func(p map[string]any) {
		p["repository"].(map[string]any)["full_name"] = repo
		switch {
		case p["check_run"] != nil:
			p["check_run"].(map[string]any)["check_suite"].(map[string]any)["head_branch"] = branch
		case p["check_suite"] != nil:
			p["check_suite"].(map[string]any)["head_branch"] = branch
		case p["workflow_run"] != nil:
			p["workflow_run"].(map[string]any)["head_branch"] = branch
		case p["branches"] != nil:
			p["branches"] = []any{map[string]any{"name": "gh-pages"}, map[string]any{"name": branch}}
		}
		if edit != nil {
			edit(p)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newChecksHandler is newTestHandler with require_checks on, whose deployer
// counts the wakes for checks.
func newChecksHandler(branch string) (*Handler, *atomic.Int64) {
	h, _ := newTestHandler(branch, zap.NewNop())
	h.checks = true
	var wakes atomic.Int64
	h.wake = func(r deployer.Reason) {
		if r != deployer.ReasonChecks {
			panic("woken for " + r)
		}
		wakes.Add(1)
	}
	return h, &wakes
}

// TestCheckDeliveries: with require_checks, a check of the deployed branch
// that completed wakes the deployer (202, "queued"); one of another branch
// or repository, or one not completed, is skipped with the reason; without
// require_checks they stay "not handled". The signature rules are those of
// every delivery.
func TestCheckDeliveries(t *testing.T) {
	for _, tc := range []struct {
		name     string
		event    string
		body     []byte
		checks   bool   // require_checks on
		secret   string // default testSecret
		branch   string // the deployer's; default testBranch
		status   int
		result   string
		contains string
	}{
		{name: "check_run of the branch", event: "check_run", checks: true,
			body:   checkFixture(t, "check_run-completed.json", testRepo, testBranch, nil),
			status: 202, result: "queued"},
		{name: "check_suite of the branch", event: "check_suite", checks: true,
			body:   checkFixture(t, "check_suite-completed.json", testRepo, testBranch, nil),
			status: 202, result: "queued"},
		{name: "workflow_run of the branch", event: "workflow_run", checks: true,
			body:   checkFixture(t, "workflow_run-completed.json", testRepo, testBranch, nil),
			status: 202, result: "queued"},
		{name: "status of a commit on the branch", event: "status", checks: true,
			body:   checkFixture(t, "status.json", testRepo, testBranch, nil),
			status: 202, result: "queued"},
		{name: "repository in another case", event: "workflow_run", checks: true,
			body:   checkFixture(t, "workflow_run-completed.json", strings.ToUpper(testRepo), testBranch, nil),
			status: 202, result: "queued"},
		{name: "branch not resolved yet: the repository's default", event: "check_suite", checks: true, branch: "-",
			body:   checkFixture(t, "check_suite-completed.json", testRepo, "main", func(p map[string]any) { p["repository"].(map[string]any)["default_branch"] = "main" }),
			status: 202, result: "queued"},

		{name: "check_run of another branch", event: "check_run", checks: true,
			body:   checkFixture(t, "check_run-completed.json", testRepo, "feature", nil),
			status: 200, result: "skipped", contains: `check run on branch "feature"; this endpoint deploys "master"`},
		{name: "check_run of a pull request from a fork", event: "check_run", checks: true,
			body: checkFixture(t, "check_run-completed.json", testRepo, "", func(p map[string]any) {
				p["check_run"].(map[string]any)["check_suite"].(map[string]any)["head_branch"] = nil
			}),
			status: 200, result: "skipped", contains: `check run on branch ""`},
		{name: "workflow_run of another repository", event: "workflow_run", checks: true,
			body:   checkFixture(t, "workflow_run-completed.json", "octo-org/octo-repo", testBranch, nil),
			status: 200, result: "skipped", contains: `workflow run in repository "octo-org/octo-repo"; this endpoint deploys "codertocat/hello-world"`},
		{name: "workflow_run requested", event: "workflow_run", checks: true,
			body:   checkFixture(t, "workflow_run-requested.json", testRepo, testBranch, nil),
			status: 200, result: "skipped", contains: `workflow run "requested"; only a completed check`},
		{name: "check_run created", event: "check_run", checks: true,
			body:   checkFixture(t, "check_run-completed.json", testRepo, testBranch, func(p map[string]any) { p["action"] = "created" }),
			status: 200, result: "skipped", contains: `check run "created"`},
		{name: "status pending", event: "status", checks: true,
			body:   checkFixture(t, "status.json", testRepo, testBranch, func(p map[string]any) { p["state"] = "pending" }),
			status: 200, result: "skipped", contains: `status "pending"`},
		{name: "status of a commit on other branches", event: "status", checks: true,
			body:   checkFixture(t, "status.json", testRepo, "feature", nil),
			status: 200, result: "skipped", contains: `status of a commit not on branch "master"`},
		{name: "status with more branches than kept", event: "status", checks: true,
			body: checkFixture(t, "status.json", testRepo, "feature", func(p map[string]any) {
				var many []any
				for i := range 40 {
					many = append(many, map[string]any{"name": fmt.Sprintf("branch-%02d-%s", i, strings.Repeat("x", 30))})
				}
				p["branches"] = many
			}),
			status: 202, result: "queued"},
		{name: "status with branches of the wrong type", event: "status", checks: true,
			body:   checkFixture(t, "status.json", testRepo, testBranch, func(p map[string]any) { p["branches"] = []any{"master"} }),
			status: 400, result: "error", contains: "invalid payload: branches[] is a string, not an object"},

		{name: "check_run without require_checks", event: "check_run",
			body:   checkFixture(t, "check_run-completed.json", testRepo, testBranch, nil),
			status: 200, result: "skipped", contains: `event "check_run" not handled`},
		{name: "status without require_checks", event: "status",
			body:   checkFixture(t, "status.json", testRepo, testBranch, nil),
			status: 200, result: "skipped", contains: `event "status" not handled`},
		{name: "check_run signed with another secret", event: "check_run", checks: true, secret: "not " + testSecret,
			body:   checkFixture(t, "check_run-completed.json", testRepo, testBranch, nil),
			status: 401, result: "error", contains: "signature mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			branch := tc.branch
			switch branch {
			case "":
				branch = testBranch
			case "-":
				branch = ""
			}
			h, wakes := newChecksHandler(branch)
			h.checks = tc.checks
			secret := tc.secret
			if secret == "" {
				secret = testSecret
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, deliveryCase{event: tc.event, body: tc.body, signWith: secret}.request(t, "/_github"), nil)
			var a answer
			if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil {
				t.Fatal(err)
			}
			if w.Code != tc.status || a.Result != tc.result || !strings.Contains(a.Reason+a.Error, tc.contains) {
				t.Errorf("answer %d %s, want %d %s with %q", w.Code, w.Body, tc.status, tc.result, tc.contains)
			}
			want := int64(0)
			if tc.result == "queued" {
				want = 1
			}
			if wakes.Load() != want {
				t.Errorf("%d wakes, want %d", wakes.Load(), want)
			}
		})
	}
}
