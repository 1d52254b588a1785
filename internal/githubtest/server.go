// Package githubtest is a local stand-in for GitHub's REST API, for tests.
//
// A Server answers the operations in testdata/github-api/operations.json (an
// extract of GitHub's own OpenAPI description) on 127.0.0.1 and validates every
// request against it: the path names an operation, path and query parameters
// are described and of the right type, the JSON body satisfies the request
// schema (unknown properties included), and the headers are those GitHub asks
// for. A request that does not validate is answered 422 and fails the test
// when it ends. Answers satisfy the response schemas; their data comes from a
// small in-memory model: deployments and their statuses as created, and the
// check runs, check suites, commit statuses and workflow runs a test sets
// per commit; pull requests a test sets, their comments, and the commit
// statuses posted (pulls.go).
// Faults can be injected for the next requests (500, 403 rate limited, 429).
// An operation of the extract that the model does not play yet is still
// validated, then answered 501.
//
// Nothing but tests may import this package.
package githubtest

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// APIVersion is the X-GitHub-Api-Version every request must carry.
const APIVersion = "2022-11-28"

// MediaType is the Accept header every request must carry, as GitHub's
// documentation recommends.
const MediaType = "application/vnd.github+json"

// maxBody bounds request bodies.
const maxBody = 1 << 20

// Options configures a Server.
type Options struct {
	// Owner and Repo name the one repository the server knows; requests
	// for others get 404. Defaults: "octo-org" and "site".
	Owner, Repo string
	// Token, when set, makes the repository private: requests must carry
	// "Authorization: Bearer <Token>" (none: 404, another: 401). When empty
	// the repository is public and requests may come without a token.
	Token string
	// Prefix is where the API is served, e.g. "/api/v3" as GitHub
	// Enterprise Server does; requests outside it are violations.
	Prefix string
}

// Fault is an error answer injected for the next requests, whatever they are.
type Fault struct {
	Status int
	// RetryAfter, when set, is sent as the Retry-After header.
	RetryAfter string
	// RateLimitReset, when set, is sent as X-RateLimit-Reset (Unix
	// seconds) with X-RateLimit-Remaining: 0, as a spent primary rate limit.
	RateLimitReset time.Time
	Message        string
	// Operation, when set, keeps the fault for the next request of that
	// operationId (e.g. "issues/create-comment"); others pass it by.
	Operation string
	// Applied makes the request take effect in the model before the fault
	// answers: GitHub did the work and the answer was lost.
	Applied bool
}

// ServerError is a plain 500.
var ServerError = Fault{Status: http.StatusInternalServerError, Message: "Server Error"}

// RateLimited is GitHub's answer once the primary rate limit is spent: 403,
// X-RateLimit-Remaining 0 and the reset time.
func RateLimited(reset time.Time) Fault {
	return Fault{Status: http.StatusForbidden, RateLimitReset: reset, Message: "API rate limit exceeded for user ID 1."}
}

// TooManyRequests is a secondary rate limit answer with Retry-After seconds.
func TooManyRequests(retryAfterSeconds int) Fault {
	return Fault{Status: http.StatusTooManyRequests, RetryAfter: strconv.Itoa(retryAfterSeconds), Message: "You have exceeded a secondary rate limit."}
}

// Request is one request the server received (valid or not).
type Request struct {
	Method    string
	Path      string            // as received, prefix included
	Operation string            // operationId, "" when none matched
	Params    map[string]string // path parameters, unescaped
	Query     url.Values
	Body      map[string]any // decoded JSON body, numbers as json.Number
	Header    http.Header
	Status    int       // the status answered
	Received  time.Time // when the request arrived (wall clock)
}

// Deployment is a deployment created through the API, with its statuses.
type Deployment struct {
	ID               int64
	Ref, SHA         string
	Task             string
	Environment      string
	Description      string
	Statuses         []DeploymentStatus
	CreatedAt        time.Time
	RequiredContexts []string
	AutoMerge        bool
	// Transient and Production are transient_environment and
	// production_environment as created (GitHub's defaults: false, and
	// true for the environment "production").
	Transient, Production bool
}

// DeploymentStatus is a status created on a deployment.
type DeploymentStatus struct {
	ID             int64
	State          string
	Description    string
	EnvironmentURL string
	LogURL         string
	Environment    string
}

// CheckRun is a check run a test sets on a commit. App is the app's slug
// ("github-actions" when empty).
type CheckRun struct {
	Name, Status, Conclusion string
	App                      string
}

// CommitStatus is a commit status a test sets on a commit.
type CommitStatus struct {
	Context, State, Description string
}

// CheckSuite is a check suite a test sets on a commit: one GitHub created
// when the commit was pushed, for an app that has not created a check run
// yet (Status "queued"). App is the app's slug ("github-actions" when empty).
type CheckSuite struct {
	App, Status, Conclusion string
}

// WorkflowRun is a GitHub Actions workflow run a test sets on a commit.
// Name is the workflow's name; Event defaults to "push"; Path, the workflow
// file, defaults to ".github/workflows/<name, lower case, - for spaces>.yml".
type WorkflowRun struct {
	Name, Status, Conclusion, Event, Path string
}

// Server is a running stand-in for GitHub's REST API.
type Server struct {
	t    testing.TB
	opts Options
	doc  *document
	ts   *httptest.Server

	mu           sync.Mutex
	changed      chan struct{} // closed and replaced after each request
	violations   []string
	requests     []Request
	faults       []Fault
	denied       map[string]bool // operation IDs the token may not call
	nextID       int64
	deployments  []*Deployment
	checkRuns    map[string][]CheckRun
	checkSuites  map[string][]CheckSuite
	statuses     map[string][]CommitStatus
	workflowRuns map[string][]WorkflowRun
	pulls        map[int]*PullRequest
	comments     []*Comment
	statusPosts  []StatusPost
	deletedEnvs  []string
}

// Start starts a Server on 127.0.0.1; it stops when the test ends, and the
// test fails then for every request that did not validate.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	doc, err := loadSpec()
	if err != nil {
		t.Fatalf("githubtest: %v", err)
	}
	if opts.Owner == "" {
		opts.Owner = "octo-org"
	}
	if opts.Repo == "" {
		opts.Repo = "site"
	}
	opts.Prefix = strings.TrimRight(opts.Prefix, "/")
	s := &Server{
		t: t, opts: opts, doc: doc,
		changed:      make(chan struct{}),
		nextID:       1000,
		denied:       map[string]bool{},
		checkRuns:    map[string][]CheckRun{},
		checkSuites:  map[string][]CheckSuite{},
		statuses:     map[string][]CommitStatus{},
		workflowRuns: map[string][]WorkflowRun{},
		pulls:        map[int]*PullRequest{},
	}
	s.ts = httptest.NewServer(s)
	t.Cleanup(func() {
		s.ts.Close()
		for _, v := range s.Violations() {
			t.Errorf("githubtest: request against GitHub's API description: %s", v)
		}
	})
	return s
}

// URL is the API's base URL (prefix included), what api_url is set to.
func (s *Server) URL() string { return s.ts.URL + s.opts.Prefix }

// Owner and Repo name the repository the server knows.
func (s *Server) Owner() string { return s.opts.Owner }

// Repo names the repository the server knows.
func (s *Server) Repo() string { return s.opts.Repo }

// Close stops the server at once; later requests fail to connect.
func (s *Server) Close() { s.ts.Close() }

// FailNext answers the next n requests (after validation) with f.
func (s *Server) FailNext(n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults = append(s.faults, f)
	}
}

// Deny makes the token lack the permission for the operations with these
// IDs (e.g. "checks/list-for-ref"): they answer 403 "Resource not accessible
// by personal access token", as GitHub does for a fine-grained token, which
// cannot be given the Checks permission.
func (s *Server) Deny(operationIDs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range operationIDs {
		s.denied[id] = true
	}
}

// SetCheckRuns sets the check runs of commit sha.
func (s *Server) SetCheckRuns(sha string, runs ...CheckRun) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checkRuns[sha] = append([]CheckRun(nil), runs...)
}

// SetCheckSuites sets the check suites of commit sha that have no check run
// yet. The check suites the server lists are these, then one per app of the
// commit's check runs, whose status and conclusion come from its runs (a
// suite set here for such an app is not listed).
func (s *Server) SetCheckSuites(sha string, suites ...CheckSuite) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checkSuites[sha] = append([]CheckSuite(nil), suites...)
}

// SetStatuses sets the commit statuses (latest per context) of commit sha.
func (s *Server) SetStatuses(sha string, statuses ...CommitStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.statuses[sha] = append([]CommitStatus(nil), statuses...)
}

// SetWorkflowRuns sets the workflow runs of commit sha.
func (s *Server) SetWorkflowRuns(sha string, runs ...WorkflowRun) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.workflowRuns[sha] = append([]WorkflowRun(nil), runs...)
}

// Requests returns every request received so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Deployments returns the deployments created so far, oldest first.
func (s *Server) Deployments() []Deployment {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Deployment, len(s.deployments))
	for i, d := range s.deployments {
		out[i] = *d
		out[i].Statuses = append([]DeploymentStatus(nil), d.Statuses...)
	}
	return out
}

// Violations returns what was wrong with the requests received so far.
func (s *Server) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.violations...)
}

// TakeViolations returns the violations so far and forgets them, for tests
// that send invalid requests on purpose.
func (s *Server) TakeViolations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.violations
	s.violations = nil
	return v
}

// WaitFor waits until cond holds, looking again after each request, and
// fails the test after 10 seconds. cond may call the Server's accessors.
func (s *Server) WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-timeout.C:
			t.Fatalf("githubtest: timed out waiting for %s", what)
		}
	}
}

// answer is what a handler of an operation returns.
type answer struct {
	status int
	body   any
	header http.Header
}

func errorAnswer(status int, msg string) answer {
	return answer{status: status, body: map[string]any{"message": msg, "documentation_url": "https://docs.github.com/rest"}}
}

// ServeHTTP validates the request, records it and answers it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := Request{Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.Query(), Header: r.Header.Clone(), Received: time.Now()}
	op, ans, violations := s.validate(r, &rec)
	s.mu.Lock()
	if len(violations) > 0 {
		for _, v := range violations {
			s.violations = append(s.violations, fmt.Sprintf("%s %s: %s", r.Method, r.URL.RequestURI(), v))
		}
		if ans.status == 0 {
			ans = answer{status: http.StatusUnprocessableEntity, body: map[string]any{
				"message": "Validation Failed", "documentation_url": "https://docs.github.com/rest",
				"errors": []any{map[string]any{"code": "invalid", "message": strings.Join(violations, "; ")}},
			}}
		}
	}
	if fi := s.faultFor(op); ans.status == 0 && fi >= 0 {
		f := s.faults[fi]
		s.faults = append(s.faults[:fi:fi], s.faults[fi+1:]...)
		if f.Applied {
			s.dispatch(r, op, &rec)
		}
		ans = errorAnswer(f.Status, f.Message)
		ans.header = http.Header{}
		if f.RetryAfter != "" {
			ans.header.Set("Retry-After", f.RetryAfter)
		}
		if !f.RateLimitReset.IsZero() {
			ans.header.Set("X-RateLimit-Remaining", "0")
			ans.header.Set("X-RateLimit-Reset", strconv.FormatInt(f.RateLimitReset.Unix(), 10))
		}
	}
	if ans.status == 0 && s.denied[op.ID] {
		ans = errorAnswer(http.StatusForbidden, "Resource not accessible by personal access token")
	}
	if ans.status == 0 {
		ans = s.dispatch(r, op, &rec)
	}
	s.mu.Unlock()
	rec.Status = ans.status
	s.write(w, r, op, ans)
	s.mu.Lock()
	s.requests = append(s.requests, rec)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// faultFor is the index of the first fault for a request of op, -1 when none.
func (s *Server) faultFor(op *operation) int {
	for i, f := range s.faults {
		if f.Operation == "" || (op != nil && f.Operation == op.ID) {
			return i
		}
	}
	return -1
}

var bearer = regexp.MustCompile(`^Bearer [^\s]+$`)

// validate checks the request against the description; a non-zero answer
// (404, 401) ends it early without a violation when GitHub would answer so
// to a well-formed request.
func (s *Server) validate(r *http.Request, rec *Request) (*operation, answer, []string) {
	var errs []string
	p := r.URL.EscapedPath()
	if !strings.HasPrefix(p, s.opts.Prefix+"/") {
		return nil, errorAnswer(http.StatusNotFound, "Not Found"), []string{fmt.Sprintf("path outside the API prefix %q", s.opts.Prefix)}
	}
	p = strings.TrimPrefix(p, s.opts.Prefix)
	op, pathVals, ok := s.doc.route(r.Method, p)
	if !ok {
		if s.doc.pathKnown(p) {
			return nil, errorAnswer(http.StatusMethodNotAllowed, "Method Not Allowed"), []string{"method not described for this path"}
		}
		return nil, errorAnswer(http.StatusNotFound, "Not Found"), []string{"no operation in the description has this path"}
	}
	rec.Operation, rec.Params = op.ID, pathVals
	if v := r.Header.Get("X-GitHub-Api-Version"); v != APIVersion {
		errs = append(errs, fmt.Sprintf("header X-GitHub-Api-Version is %q, want %q", v, APIVersion))
	}
	if v := r.Header.Get("Accept"); v != MediaType {
		errs = append(errs, fmt.Sprintf("header Accept is %q, want %q", v, MediaType))
	}
	if r.Header.Get("User-Agent") == "" {
		errs = append(errs, "header User-Agent missing (GitHub rejects requests without one)")
	}
	auth := r.Header.Get("Authorization")
	if auth != "" && !bearer.MatchString(auth) {
		errs = append(errs, "header Authorization is not a Bearer token")
	}
	errs = append(errs, op.checkParams(pathVals, r.URL.Query())...)
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	switch {
	case err != nil:
		errs = append(errs, fmt.Sprintf("reading body: %v", err))
	case len(body) > maxBody:
		errs = append(errs, "body larger than 1 MiB")
	case op.body == nil && len(body) > 0:
		errs = append(errs, "a body where the operation takes none")
	case op.body != nil && len(body) == 0 && op.bodyReq:
		errs = append(errs, "request body missing")
	case op.body != nil && len(body) > 0:
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
			errs = append(errs, fmt.Sprintf("header Content-Type is %q, want application/json", r.Header.Get("Content-Type")))
		}
		v, err := decodeJSON(body)
		if err != nil {
			errs = append(errs, fmt.Sprintf("body is not JSON: %v", err))
			break
		}
		rec.Body, _ = v.(map[string]any)
		var bodyErrs []string
		op.body.validate(v, "", true, &bodyErrs)
		for _, e := range bodyErrs {
			errs = append(errs, "body "+e)
		}
	}
	if len(errs) > 0 {
		return op, answer{}, errs
	}
	if _, ok := op.params["owner"]; !ok {
		// Not a repository's operation (an installation token, signed with
		// the app's JWT): Owner, Repo and Token do not apply.
		return op, answer{}, nil
	}
	if !strings.EqualFold(pathVals["owner"], s.opts.Owner) || !strings.EqualFold(pathVals["repo"], s.opts.Repo) {
		return op, errorAnswer(http.StatusNotFound, "Not Found"), nil
	}
	if s.opts.Token != "" {
		switch auth {
		case "":
			return op, errorAnswer(http.StatusNotFound, "Not Found"), nil
		case "Bearer " + s.opts.Token:
		default:
			return op, errorAnswer(http.StatusUnauthorized, "Bad credentials"), nil
		}
	}
	return op, answer{}, nil
}

// write sends ans, checking a 2xx body against the operation's response schema.
func (s *Server) write(w http.ResponseWriter, r *http.Request, op *operation, ans answer) {
	for k, v := range ans.header {
		w.Header()[k] = v
	}
	h := w.Header()
	if h.Get("X-RateLimit-Remaining") == "" {
		h.Set("X-RateLimit-Limit", "5000")
		h.Set("X-RateLimit-Remaining", "4999")
		h.Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10))
		h.Set("X-RateLimit-Resource", "core")
	}
	h.Set("X-GitHub-Api-Version-Selected", APIVersion)
	if ans.body == nil {
		w.WriteHeader(ans.status)
		return
	}
	body, err := json.Marshal(ans.body)
	if err != nil {
		s.fail("githubtest bug: encoding answer: %v", err)
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	if op != nil && ans.status/100 == 2 {
		sch, described := op.responses[ans.status]
		if !described {
			s.fail("githubtest bug: %s answered %d, which the description does not list", op.ID, ans.status)
		} else if sch != nil {
			if errs := checkResponse(sch, body); len(errs) > 0 {
				s.fail("githubtest bug: answer of %s breaks its schema: %s", op.ID, strings.Join(errs, "; "))
			}
		}
	}
	h.Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(ans.status)
	_, _ = w.Write(body)
}

// checkResponse validates an encoded answer against a response schema.
func checkResponse(sch *schema, body []byte) []string {
	v, err := decodeJSON(body)
	if err != nil {
		return []string{err.Error()}
	}
	var errs []string
	sch.validate(v, "", false, &errs)
	return errs
}

func (s *Server) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.violations = append(s.violations, fmt.Sprintf(format, args...))
}

// dispatch runs the model; s.mu is held.
func (s *Server) dispatch(r *http.Request, op *operation, rec *Request) answer {
	switch op.ID {
	case "repos/create-deployment":
		return s.createDeployment(op, rec)
	case "repos/list-deployments":
		return s.listDeployments(r, op, rec)
	case "repos/create-deployment-status":
		return s.createDeploymentStatus(r, op, rec)
	case "repos/list-deployment-statuses":
		return s.listDeploymentStatuses(r, op, rec)
	case "checks/list-for-ref":
		return s.listCheckRuns(r, op, rec)
	case "checks/list-suites-for-ref":
		return s.listCheckSuites(r, op, rec)
	case "repos/get-combined-status-for-ref":
		return s.combinedStatus(r, op, rec)
	case "actions/list-workflow-runs-for-repo":
		return s.listWorkflowRuns(r, op)
	case "repos/get-deployment":
		return s.getDeployment(op, rec)
	case "repos/delete-deployment":
		return s.deleteDeployment(rec)
	case "repos/delete-an-environment":
		return s.deleteEnvironment(rec)
	case "pulls/list":
		return s.listPulls(r, op)
	case "pulls/get":
		return s.getPull(op, rec)
	case "issues/list-comments":
		return s.listComments(r, op, rec)
	case "issues/create-comment":
		return s.createComment(op, rec)
	case "issues/update-comment":
		return s.updateComment(op, rec)
	case "issues/delete-comment":
		return s.deleteComment(rec)
	case "repos/create-commit-status":
		return s.createCommitStatus(op, rec)
	}
	return errorAnswer(http.StatusNotImplemented, "githubtest: "+op.ID+" not modelled")
}
