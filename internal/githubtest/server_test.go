package githubtest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const sha = "0123456789abcdef0123456789abcdef01234567"

// TestSpecLoads checks that the extract decodes with nothing the validator
// does not understand, has the operations the module calls, and that the
// example the server builds its answers from satisfies every response schema.
func TestSpecLoads(t *testing.T) {
	doc, err := loadSpec()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(doc.Source, "@octokit/openapi") {
		t.Errorf("source = %q, want the octokit package named", doc.Source)
	}
	want := map[string]bool{
		"repos/create-deployment": false, "repos/list-deployments": false,
		"repos/create-deployment-status": false, "repos/list-deployment-statuses": false,
		"checks/list-for-ref": false, "checks/list-suites-for-ref": false,
		"repos/get-combined-status-for-ref": false, "actions/list-workflow-runs-for-repo": false,
		"repos/get-deployment": false, "repos/delete-deployment": false, "repos/delete-an-environment": false,
		"pulls/list": false, "pulls/get": false, "repos/create-commit-status": false,
		"issues/list-comments": false, "issues/create-comment": false,
		"issues/update-comment": false, "issues/delete-comment": false,
		"apps/get-repo-installation": false, "apps/create-installation-access-token": false,
	}
	for _, op := range doc.ops {
		want[op.ID] = true
		for code, sch := range op.responses {
			if sch == nil {
				continue
			}
			v, err := normalize(sch.example())
			if err != nil {
				t.Fatal(err)
			}
			var errs []string
			sch.validate(v, "", false, &errs)
			if len(errs) > 0 {
				t.Errorf("%s %d: the example breaks its own schema: %v", op.ID, code, errs)
			}
		}
	}
	for id, found := range want {
		if !found {
			t.Errorf("operation %s missing from the extract", id)
		}
	}
}

func TestRoute(t *testing.T) {
	doc, err := loadSpec()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		method, path, wantOp, wantRef string
	}{
		{"POST", "/repos/o/r/deployments", "repos/create-deployment", ""},
		{"GET", "/repos/o/r/deployments", "repos/list-deployments", ""},
		{"POST", "/repos/o/r/deployments/42/statuses", "repos/create-deployment-status", ""},
		{"GET", "/repos/o/r/commits/" + sha + "/check-runs", "checks/list-for-ref", sha},
		{"GET", "/repos/o/r/commits/heads/main/check-runs", "checks/list-for-ref", "heads/main"},
		{"GET", "/repos/o/r/commits/heads%2Fmain/status", "repos/get-combined-status-for-ref", "heads/main"},
		{"GET", "/repos/o/r/actions/runs", "actions/list-workflow-runs-for-repo", ""},
		{"DELETE", "/repos/o/r/deployments/42", "repos/delete-deployment", ""},
		{"PUT", "/repos/o/r/deployments/42", "", ""},
		{"GET", "/repos/o/r/pulls", "pulls/list", ""},
		{"GET", "/repos/o/r/pulls/7", "pulls/get", ""},
		{"POST", "/repos/o/r/issues/7/comments", "issues/create-comment", ""},
		{"PATCH", "/repos/o/r/issues/comments/9", "issues/update-comment", ""},
		{"POST", "/repos/o/r/statuses/" + sha, "repos/create-commit-status", ""},
		{"DELETE", "/repos/o/r/environments/pr-7", "repos/delete-an-environment", ""},
		{"POST", "/app/installations/5/access_tokens", "apps/create-installation-access-token", ""},
		{"GET", "/repos/o/r/commits/" + sha, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			op, vals, ok := doc.route(tt.method, tt.path)
			if tt.wantOp == "" {
				if ok {
					t.Fatalf("routed to %s, want no operation", op.ID)
				}
				return
			}
			if !ok || op.ID != tt.wantOp {
				t.Fatalf("routed to %v (ok %v), want %s", op, ok, tt.wantOp)
			}
			if vals["ref"] != tt.wantRef {
				t.Errorf("ref = %q, want %q", vals["ref"], tt.wantRef)
			}
		})
	}
}

// send makes a request with the headers GitHub asks for unless hdr overrides them.
func send(t *testing.T, s *Server, method, path, body string, hdr map[string]string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", MediaType)
	req.Header.Set("X-GitHub-Api-Version", APIVersion)
	req.Header.Set("User-Agent", "githubtest")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, resp.Header, out
}

// TestRejects checks that each kind of request GitHub's description does not
// describe is answered 422 (or 404/405) and recorded, so that the test using
// the server would fail.
func TestRejects(t *testing.T) {
	s := Start(t, Options{Token: "tok"})
	auth := map[string]string{"Authorization": "Bearer tok"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{"Authorization": "Bearer tok"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name, method, path, body string
		hdr                      map[string]string
		status                   int
		violation                string
	}{
		{"unknown path", "GET", "/repos/octo-org/site/hooks", "", auth, 404, "no operation"},
		{"wrong method", "PUT", "/repos/octo-org/site/deployments", "", auth, 405, "method not described"},
		{"body missing ref", "POST", "/repos/octo-org/site/deployments", `{"environment":"production"}`, auth, 422, `required property "ref" missing`},
		{"wrong type", "POST", "/repos/octo-org/site/deployments", `{"ref":"` + sha + `","auto_merge":"no"}`, auth, 422, "where a boolean is required"},
		{"required_contexts null", "POST", "/repos/octo-org/site/deployments", `{"ref":"` + sha + `","required_contexts":null}`, auth, 422, "null where array is required"},
		{"unknown property", "POST", "/repos/octo-org/site/deployments", `{"ref":"` + sha + `","environmnet":"x"}`, auth, 422, `property "environmnet" is not in the schema`},
		{"state outside enum", "POST", "/repos/octo-org/site/deployments/1/statuses", `{"state":"done"}`, auth, 422, "is not one of"},
		{"id not an integer", "POST", "/repos/octo-org/site/deployments/abc/statuses", `{"state":"success"}`, auth, 422, `path parameter "deployment_id": "abc" is not an integer`},
		{"unknown query", "GET", "/repos/octo-org/site/actions/runs?sha=" + sha, "", auth, 422, `query parameter "sha" is not described`},
		{"query not an integer", "GET", "/repos/octo-org/site/actions/runs?per_page=many", "", auth, 422, `query parameter "per_page"`},
		{"no api version", "GET", "/repos/octo-org/site/actions/runs", "", with("X-GitHub-Api-Version", ""), 422, "X-GitHub-Api-Version"},
		{"preview accept", "GET", "/repos/octo-org/site/actions/runs", "", with("Accept", "application/vnd.github.antiope-preview+json"), 422, "header Accept"},
		{"basic auth", "GET", "/repos/octo-org/site/actions/runs", "", with("Authorization", "token tok"), 422, "not a Bearer token"},
		{"not json", "POST", "/repos/octo-org/site/deployments", `ref=x`, auth, 422, "not JSON"},
		{"comment without body", "POST", "/repos/octo-org/site/issues/7/comments", `{"text":"hi"}`, auth, 422, `required property "body" missing`},
		{"comment id not an integer", "PATCH", "/repos/octo-org/site/issues/comments/x", `{"body":"hi"}`, auth, 422, `path parameter "comment_id"`},
		{"commit status outside enum", "POST", "/repos/octo-org/site/statuses/" + sha, `{"state":"in_progress","context":"preview"}`, auth, 422, "is not one of"},
		{"pulls state outside enum", "GET", "/repos/octo-org/site/pulls?state=merged", "", auth, 422, `query parameter "state"`},
		{"delete deployment with a body", "DELETE", "/repos/octo-org/site/deployments/1", `{"force":true}`, auth, 422, "a body where the operation takes none"},
		{"token for no repository", "POST", "/app/installations/5/access_tokens", `{"repository":"site"}`, auth, 422, `property "repository" is not in the schema`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, _ := send(t, s, tt.method, tt.path, tt.body, tt.hdr)
			if status != tt.status {
				t.Errorf("status = %d, want %d", status, tt.status)
			}
			v := s.TakeViolations()
			if len(v) == 0 || !strings.Contains(strings.Join(v, "\n"), tt.violation) {
				t.Errorf("violations = %q, want one containing %q", v, tt.violation)
			}
		})
	}
}

// TestAuth checks the answers to well-formed requests without or with the
// wrong token: what GitHub answers for a private repository, no violation.
func TestAuth(t *testing.T) {
	s := Start(t, Options{Token: "tok"})
	path := "/repos/octo-org/site/commits/" + sha + "/status"
	for _, tt := range []struct {
		auth   string
		status int
	}{{"", 404}, {"Bearer nope", 401}, {"Bearer tok", 200}} {
		status, _, body := send(t, s, "GET", path, "", map[string]string{"Authorization": tt.auth})
		if status != tt.status {
			t.Errorf("Authorization %q: status %d (%v), want %d", tt.auth, status, body, tt.status)
		}
	}
	if status, _, _ := send(t, s, "GET", "/repos/octo-org/other/commits/"+sha+"/status", "", map[string]string{"Authorization": "Bearer tok"}); status != 404 {
		t.Errorf("another repository: status %d, want 404", status)
	}
}

// TestModel walks every operation with valid requests; the server checks its
// own answers against the response schemas and records any mismatch, which
// fails the test at cleanup.
func TestModel(t *testing.T) {
	s := Start(t, Options{Prefix: "/api/v3"})
	s.SetCheckRuns(sha, CheckRun{Name: "build", Status: "completed", Conclusion: "success"}, CheckRun{Name: "lint", Status: "in_progress"}, CheckRun{Name: "ext", Status: "completed", Conclusion: "neutral", App: "other-app"})
	s.SetStatuses(sha, CommitStatus{Context: "ci/a", State: "success"}, CommitStatus{Context: "ci/b", State: "pending"})
	s.SetWorkflowRuns(sha, WorkflowRun{Name: "CI", Status: "completed", Conclusion: "failure"})

	status, _, d := send(t, s, "POST", "/repos/octo-org/site/deployments", `{"ref":"`+sha+`","environment":"production","auto_merge":false,"required_contexts":[],"description":"push"}`, nil)
	if status != 201 {
		t.Fatalf("create deployment: %d %v", status, d)
	}
	id := d["id"].(float64)
	if d["sha"] != sha || d["environment"] != "production" {
		t.Errorf("deployment = %v", d)
	}
	p := "/repos/octo-org/site/deployments/" + jsonNum(id) + "/statuses"
	if status, _, _ := send(t, s, "POST", p, `{"state":"in_progress"}`, nil); status != 201 {
		t.Errorf("create status: %d", status)
	}
	if status, _, st := send(t, s, "POST", p, `{"state":"success","environment_url":"https://blog.example.com"}`, nil); status != 201 || st["environment_url"] != "https://blog.example.com" {
		t.Errorf("create status: %d %v", status, st)
	}
	if status, _, _ := send(t, s, "POST", "/repos/octo-org/site/deployments/99999/statuses", `{"state":"success"}`, nil); status != 404 {
		t.Errorf("status of an unknown deployment: %d, want 404", status)
	}
	for _, path := range []string{
		"/repos/octo-org/site/deployments?sha=" + sha,
		p,
		"/repos/octo-org/site/commits/" + sha + "/check-runs?per_page=2",
		"/repos/octo-org/site/commits/" + sha + "/check-runs?per_page=2&page=2",
		"/repos/octo-org/site/commits/" + sha + "/check-suites",
		"/repos/octo-org/site/commits/" + sha + "/status?per_page=1",
		"/repos/octo-org/site/actions/runs?head_sha=" + sha,
	} {
		status, hdr, _ := send(t, s, "GET", path, "", nil)
		if status != 200 {
			t.Errorf("GET %s: %d", path, status)
		}
		if strings.Contains(path, "per_page=2&page=2") && !strings.Contains(hdr.Get("Link"), `rel="prev"`) {
			t.Errorf("GET %s: Link %q, want a prev link", path, hdr.Get("Link"))
		}
		if strings.HasSuffix(path, "per_page=2") && !strings.Contains(hdr.Get("Link"), "page=2") {
			t.Errorf("GET %s: Link %q, want a next link to page 2", path, hdr.Get("Link"))
		}
	}
	deps := s.Deployments()
	if len(deps) != 1 || len(deps[0].Statuses) != 2 || deps[0].Statuses[1].State != "success" {
		t.Errorf("deployments = %+v", deps)
	}
	resp, err := http.Get(s.ts.URL + "/repos/octo-org/site/actions/runs")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("without the /api/v3 prefix: %d, want 404", resp.StatusCode)
	}
	if v := s.TakeViolations(); len(v) != 1 || !strings.Contains(v[0], "outside the API prefix") {
		t.Errorf("violations = %q, want the unprefixed request", v)
	}
}

// TestFaults checks the injected answers and their headers.
func TestFaults(t *testing.T) {
	s := Start(t, Options{})
	s.FailNext(1, ServerError)
	s.FailNext(1, TooManyRequests(7))
	path := "/repos/octo-org/site/commits/" + sha + "/status"
	if status, _, _ := send(t, s, "GET", path, "", nil); status != 500 {
		t.Errorf("first: %d, want 500", status)
	}
	if status, h, _ := send(t, s, "GET", path, "", nil); status != 429 || h.Get("Retry-After") != "7" {
		t.Errorf("second: %d Retry-After %q, want 429 and 7", status, h.Get("Retry-After"))
	}
	if status, _, _ := send(t, s, "GET", path, "", nil); status != 200 {
		t.Errorf("third: %d, want 200", status)
	}
}

func jsonNum(f float64) string {
	b, _ := json.Marshal(f)
	return string(b)
}
