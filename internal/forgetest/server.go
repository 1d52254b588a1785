// Package forgetest holds local stand-ins for the APIs of Gitea (and
// Forgejo, which serves the same), GitLab and Bitbucket Cloud, for tests.
//
// A Server answers on 127.0.0.1 the operations in testdata/<forge>-api/
// operations.json and validates every request against them with the
// validator of internal/githubtest: the path names an operation, parameters
// are described and of the right type, the JSON body satisfies the request
// schema (unknown properties included), and the credential is sent as the
// forge takes it. Gitea's extract comes from Gitea's own description; GitLab
// and Bitbucket publish none that covers these endpoints, so theirs are
// written by hand from their API documentation (the READMEs beside them say
// from where). A request that does not validate is answered 422 and fails
// the test when it ends. Answers satisfy the response schemas; their data
// comes from a small model: the statuses created, the statuses and
// pipelines a test sets per commit. Faults can be injected for the next
// requests.
//
// Nothing but tests may import this package.
package forgetest

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/githubtest"
)

var (
	//go:embed testdata/gitea-api/operations.json
	giteaOps []byte
	//go:embed testdata/gitlab-api/operations.json
	gitlabOps []byte
	//go:embed testdata/bitbucket-api/operations.json
	bitbucketOps []byte
)

// The forges a Server stands in for.
const (
	Gitea     = "gitea"
	Forgejo   = "forgejo"
	GitLab    = "gitlab"
	Bitbucket = "bitbucket"
)

// maxPage is the largest page each forge serves (Gitea's default
// MAX_RESPONSE_ITEMS, GitLab's and Bitbucket's documented maxima).
var maxPage = map[string]int{Gitea: 50, Forgejo: 50, GitLab: 100, Bitbucket: 100}

// Options configures a Server.
type Options struct {
	// Kind is the forge: Gitea, Forgejo, GitLab or Bitbucket.
	Kind string
	// Repo is the one repository the server knows, "owner/name" (GitLab:
	// the project's full path); requests for others get 404. Default
	// "octo-org/site".
	Repo string
	// Token, when set, makes the repository private: requests must carry
	// it as the forge takes it (none: 404, another: 401).
	Token string
	// MaxPage is the largest page served, as Gitea's MAX_RESPONSE_ITEMS
	// sets it. Default: the forge's (Gitea 50, GitLab and Bitbucket 100).
	MaxPage int
}

// Fault is an error answer injected for the next requests.
type Fault struct {
	Status int
	// RetryAfter, when set, is sent as Retry-After.
	RetryAfter string
	// RateLimitReset, when set, is sent as X-RateLimit-Reset with
	// X-RateLimit-Remaining: 0.
	RateLimitReset time.Time
}

// Status is a commit status: one created through the API, or one a test
// sets. Name is the context (Gitea), name (GitLab) or key (Bitbucket).
type Status struct {
	Commit       string
	Name         string
	State        string
	Description  string
	TargetURL    string
	AllowFailure bool // GitLab
	Label        string
}

// Pipeline is a GitLab pipeline a test sets on a commit.
type Pipeline struct {
	ID     int64
	Status string
	Source string // "push" when empty
}

// Request is one request the server received.
type Request struct {
	Method, Path string
	Operation    string // operationId, "" when none matched
	Header       http.Header
	Body         map[string]any
	Status       int
}

// Server is a running stand-in.
type Server struct {
	t      testing.TB
	opts   Options
	prefix string
	spec   *githubtest.Spec
	ts     *httptest.Server

	mu         sync.Mutex
	changed    chan struct{}
	violations []string
	requests   []Request
	faults     []Fault
	nextID     int64
	created    []Status            // through the API, in order
	statuses   map[string][]Status // set by the test, per commit
	pipelines  map[string][]Pipeline
}

// Start starts a Server on 127.0.0.1; it stops when the test ends, and the
// test fails then for every request that did not validate.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	var ops []byte
	var prefix string
	switch opts.Kind {
	case Gitea, Forgejo:
		ops, prefix = giteaOps, "/api/v1"
	case GitLab:
		ops, prefix = gitlabOps, "/api/v4"
	case Bitbucket:
		ops, prefix = bitbucketOps, "/2.0"
	default:
		t.Fatalf("forgetest: unknown forge %q", opts.Kind)
	}
	spec, err := githubtest.ParseSpec(ops)
	if err != nil {
		t.Fatalf("forgetest: %v", err)
	}
	if opts.Repo == "" {
		opts.Repo = "octo-org/site"
	}
	if opts.MaxPage <= 0 {
		opts.MaxPage = maxPage[opts.Kind]
	}
	s := &Server{t: t, opts: opts, prefix: prefix, spec: spec, changed: make(chan struct{}), nextID: 100,
		statuses: map[string][]Status{}, pipelines: map[string][]Pipeline{}}
	s.ts = httptest.NewServer(s)
	t.Cleanup(func() {
		s.ts.Close()
		for _, v := range s.Violations() {
			t.Errorf("forgetest: request against %s's API description: %s", opts.Kind, v)
		}
	})
	return s
}

// URL is the API's base URL (https://HOST/api/v1 and so on), what the
// client is given.
func (s *Server) URL() string { return s.ts.URL + s.prefix }

// BaseURL is the forge's web address: URL without the API's prefix (for
// Bitbucket, whose API has a host of its own, the same as URL).
func (s *Server) BaseURL() string {
	if s.opts.Kind == Bitbucket {
		return s.URL()
	}
	return s.ts.URL
}

// Repo is the repository the server knows.
func (s *Server) Repo() string { return s.opts.Repo }

// FailNext answers the next n requests (after validation) with f.
func (s *Server) FailNext(n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults = append(s.faults, f)
	}
}

// SetStatuses sets the statuses of commit sha besides those created through
// the API (each the latest of its name).
func (s *Server) SetStatuses(sha string, statuses ...Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.statuses[sha] = append([]Status(nil), statuses...)
}

// SetPipelines sets the GitLab pipelines of commit sha.
func (s *Server) SetPipelines(sha string, pipelines ...Pipeline) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pipelines[sha] = append([]Pipeline(nil), pipelines...)
}

// Created returns the statuses created through the API, in order.
func (s *Server) Created() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Status(nil), s.created...)
}

// Requests returns every request received so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Violations returns what was wrong with the requests received so far.
func (s *Server) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.violations...)
}

// TakeViolations returns the violations so far and forgets them.
func (s *Server) TakeViolations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.violations
	s.violations = nil
	return v
}

// WaitFor waits until cond holds, looking again after each request, and
// fails the test after 10 seconds.
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
			t.Fatalf("forgetest: timed out waiting for %s", what)
		}
	}
}

type answer struct {
	status int
	body   any
	header http.Header
}

// errorAnswer is an error as the forge words it.
func (s *Server) errorAnswer(status int, msg string) answer {
	switch s.opts.Kind {
	case Bitbucket:
		return answer{status: status, body: map[string]any{"type": "error", "error": map[string]any{"message": msg}}}
	case GitLab:
		return answer{status: status, body: map[string]any{"message": fmt.Sprintf("%d %s", status, msg)}}
	}
	return answer{status: status, body: map[string]any{"message": msg, "url": s.ts.URL + "/api/swagger"}}
}

// ServeHTTP validates the request, records it and answers it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := Request{Method: r.Method, Path: r.URL.EscapedPath(), Header: r.Header.Clone()}
	op, violations := s.spec.Check(r, s.prefix)
	if op != nil {
		rec.Operation, rec.Body = op.ID, op.Body
	}
	violations = append(violations, s.checkAuth(r)...)
	s.mu.Lock()
	var ans answer
	switch {
	case len(violations) > 0:
		for _, v := range violations {
			s.violations = append(s.violations, fmt.Sprintf("%s %s: %s", r.Method, r.URL.RequestURI(), v))
		}
		ans = s.errorAnswer(http.StatusUnprocessableEntity, strings.Join(violations, "; "))
		if op == nil {
			ans = s.errorAnswer(http.StatusNotFound, "Not Found")
		}
	case len(s.faults) > 0:
		f := s.faults[0]
		s.faults = s.faults[1:]
		ans = s.errorAnswer(f.Status, http.StatusText(f.Status))
		ans.header = http.Header{}
		if f.RetryAfter != "" {
			ans.header.Set("Retry-After", f.RetryAfter)
		}
		if !f.RateLimitReset.IsZero() {
			ans.header.Set("X-RateLimit-Remaining", "0")
			ans.header.Set("X-RateLimit-Reset", strconv.FormatInt(f.RateLimitReset.Unix(), 10))
		}
	default:
		ans = s.access(r, op)
		if ans.status == 0 {
			ans = s.dispatch(r, op)
		}
	}
	s.mu.Unlock()
	rec.Status = ans.status
	s.write(w, op, ans)
	s.mu.Lock()
	s.requests = append(s.requests, rec)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

var (
	giteaAuth  = regexp.MustCompile(`^(token|Bearer) \S+$`)
	bearerAuth = regexp.MustCompile(`^(Bearer|Basic) \S+$`)
)

// checkAuth checks the credential's form: Gitea's "Authorization: token",
// GitLab's PRIVATE-TOKEN (never Authorization with it), Bitbucket's Bearer
// or Basic.
func (s *Server) checkAuth(r *http.Request) []string {
	var errs []string
	auth := r.Header.Get("Authorization")
	switch s.opts.Kind {
	case Gitea, Forgejo:
		if auth != "" && !giteaAuth.MatchString(auth) {
			errs = append(errs, "header Authorization is not \"token <token>\"")
		}
	case GitLab:
		if auth != "" && r.Header.Get("PRIVATE-TOKEN") != "" {
			errs = append(errs, "both Authorization and PRIVATE-TOKEN")
		}
	case Bitbucket:
		if auth != "" && !bearerAuth.MatchString(auth) {
			errs = append(errs, "header Authorization is neither Bearer nor Basic")
		}
	}
	if r.Header.Get("User-Agent") == "" {
		errs = append(errs, "header User-Agent missing")
	}
	return errs
}

// credential is the token the request carries, as the forge reads it.
func (s *Server) credential(r *http.Request) string {
	switch s.opts.Kind {
	case GitLab:
		if t := r.Header.Get("PRIVATE-TOKEN"); t != "" {
			return t
		}
		return strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	case Bitbucket:
		if user, pass, ok := r.BasicAuth(); ok {
			return user + ":" + pass
		}
		return strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	}
	auth := r.Header.Get("Authorization")
	if _, t, ok := strings.Cut(auth, " "); ok {
		return t
	}
	return ""
}

// access answers 404 for another repository, and for a private one the
// request has no credential for; 401 for a wrong credential.
func (s *Server) access(r *http.Request, op *githubtest.Operation) answer {
	var repo string
	switch s.opts.Kind {
	case GitLab:
		repo = op.Params["id"]
	case Bitbucket:
		repo = op.Params["workspace"] + "/" + op.Params["repo_slug"]
	default:
		repo = op.Params["owner"] + "/" + op.Params["repo"]
	}
	if !strings.EqualFold(repo, s.opts.Repo) {
		return s.errorAnswer(http.StatusNotFound, "Not Found")
	}
	if s.opts.Token == "" {
		return answer{}
	}
	switch s.credential(r) {
	case "":
		return s.errorAnswer(http.StatusNotFound, "Not Found")
	case s.opts.Token:
		return answer{}
	}
	return s.errorAnswer(http.StatusUnauthorized, "Unauthorized")
}

// write sends ans, checking it against the operation's responses.
func (s *Server) write(w http.ResponseWriter, op *githubtest.Operation, ans answer) {
	for k, v := range ans.header {
		w.Header()[k] = v
	}
	body, err := json.Marshal(ans.body)
	if err != nil {
		s.fail("forgetest bug: encoding answer: %v", err)
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	if op != nil && ans.status/100 == 2 {
		if errs := s.spec.CheckAnswer(op, ans.status, body); len(errs) > 0 {
			s.fail("forgetest bug: answer of %s breaks its description: %s", op.ID, strings.Join(errs, "; "))
		}
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(ans.status)
	_, _ = w.Write(body)
}

func (s *Server) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.violations = append(s.violations, fmt.Sprintf(format, args...))
}
