// Package forgeapi is the module's client of the APIs of the forges other
// than GitHub: Gitea and Forgejo (/api/v1), GitLab (/api/v4) and Bitbucket
// Cloud (2.0). It reports deploys as commit statuses (Reporter: context
// "deploy/<environment>"; on Bitbucket a build status keyed
// "deploy-<environment>") and reads whether a commit's statuses passed
// (Client.Checks), with the rules and the retries of package githubapi.
//
// It speaks plain net/http to the documented endpoints, three per forge,
// rather than code.gitea.io/sdk/gitea or gitlab.com/gitlab-org/api/client-go:
// the Gitea SDK binds one context to a whole client (SetContext), its
// GetCombinedStatus takes no page, so a commit with more contexts than a
// page would be judged on part of them, and it sets the token on every
// request whatever the host; GitLab's client retries and rate-limits on its
// own (go-retryablehttp, x/time/rate), against the reporter's queue, and
// brings 2.3 MB of Go source in one package into every Caddy built with the
// plugin, for three endpoints (a program that sets one commit status with
// it is 3.4 MB larger than with net/http: 11.9 MB against 8.5 MB, Go 1.26,
// client-go v2.64.0).
//
// Errors name the endpoint by its path template and the status, never the
// token or a URL. The token goes only to the API's scheme, host and port;
// over http:// only to a loopback host. The package knows nothing of Caddy
// or of git.
package forgeapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/apiretry"
)

// Kind is a forge whose API the package speaks.
type Kind string

// The forges.
const (
	Gitea     Kind = "gitea"
	Forgejo   Kind = "forgejo"
	GitLab    Kind = "gitlab"
	Bitbucket Kind = "bitbucket"
)

// DefaultBitbucketAPIURL is Bitbucket Cloud's API.
const DefaultBitbucketAPIURL = "https://api.bitbucket.org/2.0"

// APIURL returns the API's base for a forge at base (its web address):
// base/api/v1 for Gitea and Forgejo, base/api/v4 for GitLab, and Bitbucket
// Cloud's API for Bitbucket.
func APIURL(kind Kind, base string) string {
	base = strings.TrimRight(base, "/")
	switch kind {
	case Gitea, Forgejo:
		return base + "/api/v1"
	case GitLab:
		return base + "/api/v4"
	}
	return DefaultBitbucketAPIURL
}

const defaultUserAgent = "caddy-github-webhook"

// maxAnswer bounds the body of one answer read.
const maxAnswer = 8 << 20

// requestTimeout bounds one request, answer body included.
const requestTimeout = 60 * time.Second

// Config configures a Client.
type Config struct {
	// Kind is the forge.
	Kind Kind
	// APIURL is the API's base, used as given (see APIURL). It must not
	// carry credentials; with a token, http:// only to a loopback host.
	APIURL string
	// Token is the API token: sent as "Authorization: token" to Gitea and
	// Forgejo, "PRIVATE-TOKEN" to GitLab, and as a Bearer credential to
	// Bitbucket (a repository, project or workspace access token), or as
	// Basic credentials when it is "user:app-password". Empty: anonymous.
	Token string
	// Repo names the repository: "owner/name"; on GitLab the project's
	// full path, which may hold several groups ("group/sub/name").
	Repo string
	// Environment is the environment deploys are reported in: the
	// reporter's status is "deploy/<Environment>" ("deploy-<Environment>"
	// on Bitbucket), and Checks never counts it. May be empty without a
	// Reporter.
	Environment string
	// UserAgent is sent with every request. Default "caddy-github-webhook".
	UserAgent string
	// Logger receives the reporter's log lines. Default: none.
	Logger *zap.Logger
	// OnRequest, when set, is called once per request with the endpoint's
	// path template and its result (apiretry.ResultOK, ...). It must not
	// block.
	OnRequest func(path, result string)
}

// Client calls one forge's API for one repository. It is safe for
// concurrent use.
type Client struct {
	kind        Kind
	base        *url.URL // no trailing slash in Path
	origin      string
	token       string
	repo        string
	owner, name string // repo split at its last "/"
	env         string
	ua          string
	log         *zap.Logger
	onRequest   func(path, result string)
	transport   *http.Transport
	hc          *http.Client
	perPage     int
}

// New returns a Client for cfg. It does no I/O. Its errors do not name
// the forge: callers say which API they configure.
func New(cfg Config) (*Client, error) {
	switch cfg.Kind {
	case Gitea, Forgejo, GitLab, Bitbucket:
	default:
		return nil, fmt.Errorf("unknown forge %q", cfg.Kind)
	}
	i := strings.LastIndexByte(cfg.Repo, '/')
	if i <= 0 || i == len(cfg.Repo)-1 {
		return nil, fmt.Errorf("repository %q is not owner/name", cfg.Repo)
	}
	if cfg.Kind != GitLab && strings.Count(cfg.Repo, "/") != 1 {
		return nil, fmt.Errorf("repository %q is not owner/name", cfg.Repo)
	}
	if strings.ContainsAny(cfg.Token, " \t\r\n") {
		return nil, errors.New("token contains white space")
	}
	if cfg.APIURL == "" && cfg.Kind == Bitbucket {
		cfg.APIURL = DefaultBitbucketAPIURL
	}
	u, err := url.Parse(cfg.APIURL)
	switch {
	case err != nil || u.Host == "":
		return nil, fmt.Errorf("api url %q is not a URL", cfg.APIURL)
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, fmt.Errorf("api url scheme %q: want https or http", u.Scheme)
	case u.User != nil:
		return nil, errors.New("api url must not carry credentials; use token")
	case u.RawQuery != "" || u.Fragment != "":
		return nil, errors.New("api url must not have a query or fragment")
	case u.Scheme == "http" && cfg.Token != "" && !IsLoopback(u.Hostname()):
		// The token would cross the network in clear.
		return nil, fmt.Errorf("a token goes over http:// only to a loopback host, not %s: use https", u.Hostname())
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	c := &Client{
		kind: cfg.Kind, base: u, origin: origin(u), token: cfg.Token,
		repo: cfg.Repo, owner: cfg.Repo[:i], name: cfg.Repo[i+1:], env: cfg.Environment,
		ua: cfg.UserAgent, log: cfg.Logger, onRequest: cfg.OnRequest, perPage: 50,
	}
	if c.ua == "" {
		c.ua = defaultUserAgent
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
	c.hc = &http.Client{Transport: c.transport, CheckRedirect: c.redirect}
	return c, nil
}

// Kind returns the forge the client speaks to.
func (c *Client) Kind() Kind { return c.kind }

// CloseIdleConnections closes the client's idle keep-alive connections.
func (c *Client) CloseIdleConnections() { c.transport.CloseIdleConnections() }

// IsLoopback reports whether host names this machine: localhost or a
// loopback address.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// origin is u's scheme, host and port, lower-case, the port always named.
func origin(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		port = map[string]string{"https": "443", "http": "80"}[scheme]
	}
	return scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// redirect follows a redirect only within the API's origin, where the
// credential set by authorize goes along; any other is refused.
func (c *Client) redirect(req *http.Request, via []*http.Request) error {
	if got := origin(req.URL); got != c.origin {
		return fmt.Errorf("redirected to %s: refused, only %s is asked", got, c.origin)
	}
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	return nil
}

// authorize sets the forge's credential on req when it goes to the API's
// origin, and removes any other.
func (c *Client) authorize(req *http.Request) {
	req.Header.Del("Authorization")
	req.Header.Del("PRIVATE-TOKEN")
	if c.token == "" || origin(req.URL) != c.origin {
		return
	}
	switch c.kind {
	case Gitea, Forgejo:
		req.Header.Set("Authorization", "token "+c.token)
	case GitLab:
		req.Header.Set("PRIVATE-TOKEN", c.token)
	case Bitbucket:
		if user, pass, ok := strings.Cut(c.token, ":"); ok {
			req.SetBasicAuth(user, pass)
		} else {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
	}
}

// APIError is a failed call: the endpoint, the status (0 when no answer
// came) and the forge's message, with the token redacted.
type APIError struct {
	Kind       Kind
	Method     string
	Path       string // path template
	StatusCode int
	Message    string
	err        error // a context error, for errors.Is
}

// Error says which endpoint failed and how.
func (e *APIError) Error() string {
	s := string(e.Kind) + " api: " + e.Method + " " + e.Path + ": "
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

// Forbidden reports whether the forge refused the call for want of
// permission (403 that is not a rate limit).
func (e *APIError) Forbidden() bool { return e.StatusCode == http.StatusForbidden }

// endpoint is a URL below the API's base: its path segments, each escaped
// as one segment (GitLab's project path "group/name" becomes group%2Fname).
func (c *Client) endpoint(query url.Values, segments ...string) string {
	var b strings.Builder
	b.WriteString(c.base.Scheme + "://" + c.base.Host + c.base.EscapedPath())
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	if len(query) > 0 {
		b.WriteString("?" + query.Encode())
	}
	return b.String()
}

// call makes one request to rawURL (which must be on the API's origin),
// with body encoded as JSON when not nil, and decodes a 2xx answer into out
// when not nil. It returns the answer (nil when none came) and an *APIError.
func (c *Client) call(ctx context.Context, method, path, rawURL string, body, out any) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	fail := func(resp *http.Response, msg string, err error) (*http.Response, error) {
		e := &APIError{Kind: c.kind, Method: method, Path: path, Message: msg, err: err}
		if resp != nil {
			e.StatusCode = resp.StatusCode
		}
		if c.token != "" {
			e.Message = strings.ReplaceAll(e.Message, c.token, "[REDACTED]")
		}
		return resp, e
	}
	u, err := url.Parse(rawURL)
	if err != nil || origin(u) != c.origin {
		return fail(nil, "refused: a link off the API's origin", nil)
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fail(nil, "encoding the request: "+err.Error(), nil)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, rawURL, rd)
	if err != nil {
		return fail(nil, "making the request: "+err.Error(), nil)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.ua)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c.authorize(req)
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fail(nil, ctx.Err().Error(), ctx.Err())
		}
		return fail(nil, transportMessage(err), nil)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	switch {
	case err != nil:
		return fail(resp, "reading the answer: "+transportMessage(err), ctx.Err())
	case len(data) > maxAnswer:
		return fail(resp, "answer larger than 8 MiB", nil)
	case resp.StatusCode/100 != 2:
		return fail(resp, errorMessage(data), nil)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fail(resp, "decoding the answer: "+err.Error(), nil)
		}
	}
	return resp, nil
}

// errorMessage finds the message in an error answer: Gitea's and GitLab's
// "message" (GitLab's may be an object), GitLab's "error", Bitbucket's
// "error.message".
func errorMessage(data []byte) string {
	var v struct {
		Message json.RawMessage `json:"message"`
		Error   json.RawMessage `json:"error"`
	}
	if json.Unmarshal(data, &v) != nil {
		return ""
	}
	var s string
	if json.Unmarshal(v.Message, &s) == nil && s != "" {
		return oneLine(s)
	}
	if len(v.Message) > 0 && string(v.Message) != "null" {
		return oneLine(string(v.Message))
	}
	if json.Unmarshal(v.Error, &s) == nil && s != "" {
		return oneLine(s)
	}
	var bb struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(v.Error, &bb) == nil {
		return oneLine(bb.Message)
	}
	return ""
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
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

// get makes one GET and counts it; the gate's caller retries, not this.
func (c *Client) get(ctx context.Context, path, rawURL string, out any) (*http.Response, error) {
	resp, err := c.call(ctx, http.MethodGet, path, rawURL, nil, out)
	if err != nil {
		c.onRequest(path, apiretry.ResultError)
		return nil, err
	}
	c.onRequest(path, apiretry.ResultOK)
	return resp, nil
}
