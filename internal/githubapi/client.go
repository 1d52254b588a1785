// Package githubapi is the module's client of GitHub's REST API: it reports
// deploys as GitHub deployments (Reporter), reads whether a commit's
// checks passed (Client.Checks), and reports previews of pull requests
// (PreviewReporter, Client.OpenPullRequests).
//
// Every call goes through go-github with the token as a Bearer credential,
// Accept: application/vnd.github+json and X-GitHub-Api-Version: 2022-11-28.
// Errors name the endpoint by its path template and the status, never the
// token or a URL. The package knows nothing of Caddy or of the deployer.
package githubapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/go-github/v74/github"
	"go.uber.org/zap"
)

// DefaultAPIURL is the base of GitHub's REST API on github.com.
const DefaultAPIURL = "https://api.github.com/"

const (
	apiVersion       = "2022-11-28"
	mediaType        = "application/vnd.github+json"
	defaultUserAgent = "caddy-github-webhook"
)

// The endpoints the package calls, as path templates: the path label of the
// request metric, and what errors name.
const (
	PathDeployments        = "/repos/{owner}/{repo}/deployments"
	PathDeploymentStatuses = "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses"
	PathCheckRuns          = "/repos/{owner}/{repo}/commits/{ref}/check-runs"
	PathCheckSuites        = "/repos/{owner}/{repo}/commits/{ref}/check-suites"
	PathCommitStatus       = "/repos/{owner}/{repo}/commits/{ref}/status"
	PathWorkflowRuns       = "/repos/{owner}/{repo}/actions/runs"
)

// The results passed to Config.OnRequest, one per request (and one per
// report given up without a request).
const (
	// ResultOK is a request that succeeded.
	ResultOK = "ok"
	// ResultRetry is a request that failed and will be tried again.
	ResultRetry = "retry"
	// ResultError is a request that failed in a way retrying cannot fix
	// (a 4xx other than a rate limit): the report is given up.
	ResultError = "error"
	// ResultDropped is a report given up: its last attempt failed past
	// the bound of attempts or age, the queue overflowed, or the reporter
	// was closed before it could be sent.
	ResultDropped = "dropped"
)

// Config configures a Client.
type Config struct {
	// APIURL is the base URL of the REST API, used as given: empty means
	// https://api.github.com; GitHub Enterprise Server serves it at
	// https://HOST/api/v3. It must not carry credentials.
	APIURL string
	// Token is a fine-grained personal access token (or any token GitHub
	// takes as a Bearer credential). Empty: anonymous requests, enough to
	// read a public repository's checks.
	Token string
	// Owner and Repo name the repository.
	Owner, Repo string
	// UserAgent is sent with every request; GitHub rejects requests
	// without one. Default "caddy-github-webhook".
	UserAgent string
	// Logger receives the reporter's log lines. Default: none.
	Logger *zap.Logger
	// OnRequest, when set, is called once per request with the endpoint's
	// path template (PathDeployments, ...) and its result (ResultOK, ...),
	// for the caddy_github_webhook_github_api_requests_total metric. It
	// must not block.
	OnRequest func(path, result string)
}

// Client calls GitHub's REST API for one repository. It is safe for
// concurrent use.
type Client struct {
	gh          *github.Client
	owner, repo string
	token       string // kept only to redact it from messages
	log         *zap.Logger
	onRequest   func(path, result string)
	transport   *http.Transport
	perPage     int // page size of list calls; tests make it small
}

// requestTimeout bounds one request, answer body included.
const requestTimeout = 60 * time.Second

// New returns a Client for cfg. It does no I/O.
func New(cfg Config) (*Client, error) {
	if cfg.Owner == "" || cfg.Repo == "" {
		return nil, errors.New("github api: owner and repo are required")
	}
	base, err := parseAPIURL(cfg.APIURL)
	if err != nil {
		return nil, err
	}
	if strings.ContainsAny(cfg.Token, " \t\r\n") {
		return nil, errors.New("github api: token contains white space")
	}
	c := &Client{
		owner: cfg.Owner, repo: cfg.Repo, token: cfg.Token,
		log: cfg.Logger, onRequest: cfg.OnRequest, perPage: 100,
	}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	if c.onRequest == nil {
		c.onRequest = func(string, string) {}
	}
	c.transport = &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   4,
		ForceAttemptHTTP2:     true,
	}
	// No http.Client.Timeout: with a wrapping RoundTripper it costs a
	// goroutine per request that go-github's error path leaves running
	// until the timeout; call bounds each request with its context instead.
	hc := &http.Client{
		Transport:     &headers{next: c.transport, token: cfg.Token, origin: origin(base)},
		CheckRedirect: sameOrigin(base),
	}
	c.gh = github.NewClient(hc)
	c.gh.BaseURL = base
	// Rate limits are handled by the reporter's retries, from the
	// headers of each answer and with its own clock; go-github's
	// pre-emptive check would fail requests by the wall clock instead.
	c.gh.DisableRateLimitCheck = true
	c.gh.UserAgent = cfg.UserAgent
	if c.gh.UserAgent == "" {
		c.gh.UserAgent = defaultUserAgent
	}
	return c, nil
}

// parseAPIURL checks api_url and gives it the trailing slash go-github needs.
// Unlike go-github's WithEnterpriseURLs, it appends no /api/v3 of its own: the
// URL is used as the user wrote it.
func parseAPIURL(s string) (*url.URL, error) {
	if s == "" {
		s = DefaultAPIURL
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, errors.New("github api: api_url is not a URL")
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, fmt.Errorf("github api: api_url scheme %q: want https or http", u.Scheme)
	case u.Host == "":
		return nil, errors.New("github api: api_url has no host")
	case u.User != nil:
		return nil, errors.New("github api: api_url must not carry credentials; use token")
	case u.RawQuery != "" || u.Fragment != "":
		return nil, errors.New("github api: api_url must not have a query or fragment")
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
		u.RawPath = ""
	}
	return u, nil
}

// CloseIdleConnections closes the client's idle keep-alive connections.
func (c *Client) CloseIdleConnections() { c.transport.CloseIdleConnections() }

// maxRedirects bounds the redirects one request follows, as net/http does.
const maxRedirects = 10

// origin is u's scheme, host and port, lower-case, the port always named:
// what a request must match to carry the token.
func origin(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		port = map[string]string{"https": "443", "http": "80"}[scheme]
	}
	return scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// sameOrigin is the client's redirect policy: a redirect is followed only
// to api_url's own scheme, host and port (GitHub moves a renamed
// repository's calls within the API). Any other is refused, so that no
// other host, and nothing over plain http when api_url is https, is ever
// asked with the token, nor answers in GitHub's name.
func sameOrigin(base *url.URL) func(*http.Request, []*http.Request) error {
	want := origin(base)
	return func(req *http.Request, via []*http.Request) error {
		if got := origin(req.URL); got != want {
			return fmt.Errorf("redirected to %s: refused, only %s is asked", got, want)
		}
		if len(via) >= maxRedirects {
			return fmt.Errorf("stopped after %d redirects", maxRedirects)
		}
		return nil
	}
}

// headers sets the headers GitHub asks for on every request: go-github would
// otherwise send preview media types on some endpoints.
type headers struct {
	next   http.RoundTripper
	token  string
	origin string // api_url's origin: the only one the token goes to
}

// RoundTrip sets Accept, X-GitHub-Api-Version, and Authorization when the
// request goes to api_url's scheme, host and port.
func (h *headers) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("Accept", mediaType)
	req.Header.Set("X-GitHub-Api-Version", apiVersion)
	req.Header.Del("Authorization")
	if h.token != "" && origin(req.URL) == h.origin {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	return h.next.RoundTrip(req)
}

// APIError is a failed call: the endpoint, the status (0 when no answer
// came) and GitHub's message, with the token redacted.
type APIError struct {
	Method     string
	Path       string // path template, e.g. PathDeployments
	StatusCode int
	Message    string
	err        error // a context error, for errors.Is
	limited    bool  // the answer was a rate limit
}

// Forbidden reports whether GitHub refused the call for want of permission
// (403 that is not a rate limit): the token lacks what the endpoint needs.
func (e *APIError) Forbidden() bool {
	return e.StatusCode == http.StatusForbidden && !e.limited
}

// Error says which endpoint failed and how.
func (e *APIError) Error() string {
	s := e.Method + " " + e.Path + ": "
	if e.StatusCode != 0 {
		s += fmt.Sprintf("%d %s", e.StatusCode, http.StatusText(e.StatusCode))
		if e.Message != "" {
			s += ": "
		}
	}
	return s + e.Message
}

// Unwrap returns context.Canceled or context.DeadlineExceeded when the call
// ended with its context.
func (e *APIError) Unwrap() error { return e.err }

// call runs one go-github call against method and path (the template) and
// returns the answer's http.Response (nil when none came) and an *APIError.
func (c *Client) call(ctx context.Context, method, path string, fn func(context.Context) (*github.Response, error)) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := fn(ctx)
	var hr *http.Response
	if resp != nil {
		hr = resp.Response
	}
	if err == nil {
		return hr, nil
	}
	e := &APIError{Method: method, Path: path}
	if hr != nil {
		e.StatusCode = hr.StatusCode
		_, e.limited = headerWait(hr.Header, time.Now())
	}
	var (
		er    *github.ErrorResponse
		rl    *github.RateLimitError
		abuse *github.AbuseRateLimitError
	)
	switch {
	case errors.As(err, &er):
		e.Message = er.Message
	case errors.As(err, &rl):
		e.Message, e.limited = rl.Message, true
	case errors.As(err, &abuse):
		e.Message, e.limited = abuse.Message, true
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		e.Message, e.err = err.Error(), ctx.Err()
	case hr != nil && hr.StatusCode/100 == 2:
		e.Message = "decoding the answer: " + err.Error()
	default:
		e.Message = transportMessage(err)
	}
	if c.token != "" {
		e.Message = strings.ReplaceAll(e.Message, c.token, "[REDACTED]")
	}
	return hr, e
}

// transportMessage describes a failure to get an answer without the URL.
func transportMessage(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timed out: " + err.Error()
	}
	return err.Error()
}
