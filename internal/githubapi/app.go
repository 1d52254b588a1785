package githubapi

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-github/v74/github"
	"go.uber.org/zap"
)

// The endpoints of a GitHub App's authentication, as path templates.
const (
	PathRepoInstallation = "/repos/{owner}/{repo}/installation"
	PathAccessTokens     = "/app/installations/{installation_id}/access_tokens"
)

// DefaultRenew is how long before it expires an installation token is
// replaced when AppConfig.Renew is zero. GitHub's tokens live an hour; a
// fetch or a call that starts with one has minutes left.
const DefaultRenew = 5 * time.Minute

// JWT timing: iat a minute in the past, for clocks that drift (as GitHub
// advises); exp within GitHub's 10 minutes, counted from iat, with room.
const (
	jwtBackdate = 60 * time.Second
	jwtLifetime = 9 * time.Minute
)

// AppConfig configures AppTokens.
type AppConfig struct {
	// APIURL is the REST API's base URL, as in Config.
	APIURL string
	// AppID is the GitHub App's ID (its settings page: "App ID"), the
	// JWT's issuer.
	AppID int64
	// Key is the app's private key, which signs the JWT (RS256).
	Key *rsa.PrivateKey
	// InstallationID is the app's installation on the repository's owner;
	// zero: looked up (GET /repos/{owner}/{repo}/installation) before the
	// first token, and again if the installation is gone.
	InstallationID int64
	// Owner and Repo name the repository; every token is limited to it.
	Owner, Repo string
	// UserAgent, Logger and OnRequest are as in Config.
	UserAgent string
	Logger    *zap.Logger
	OnRequest func(path, result string)
	// Renew is how long before its expires_at a token is replaced: a
	// call from then on gets a new one. Default DefaultRenew. A token
	// that GitHub gives with less time left than that is used for the
	// call it was asked for only.
	Renew time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// AppTokens gives a GitHub App's installation tokens for one repository:
// for the API (Config.App) and for git (it is a deployer.TokenSource). It
// asks GitHub for a token with a JWT signed by the app's key when it has
// none, or when the one it has expires within Renew, or after it was told
// the token failed; nothing runs in the background. Tokens are kept in
// memory only, and never appear in its errors or logs. It is safe for
// concurrent use.
type AppTokens struct {
	gh        *github.Client // signs each request with a fresh JWT
	transport *http.Transport
	appID     int64
	key       *rsa.PrivateKey
	owner     string
	repo      string
	fixedID   int64 // AppConfig.InstallationID
	renew     time.Duration
	now       func() time.Time
	log       *zap.Logger
	onRequest func(path, result string)

	sem chan struct{} // one request for a token at a time

	mu           sync.Mutex
	token        string
	expires      time.Time
	renewAt      time.Time
	installation int64    // fixedID, or the one looked up; 0 until then
	old          []string // tokens given before, for redact
}

// NewAppTokens returns an AppTokens for cfg. It does no I/O.
func NewAppTokens(cfg AppConfig) (*AppTokens, error) {
	if cfg.Owner == "" || cfg.Repo == "" {
		return nil, errors.New("github app: owner and repo are required")
	}
	if cfg.AppID <= 0 {
		return nil, errors.New("github app: the app ID must be a positive number")
	}
	if cfg.InstallationID < 0 {
		return nil, errors.New("github app: the installation ID must be a positive number")
	}
	if cfg.Key == nil {
		return nil, errors.New("github app: the private key is required")
	}
	base, err := parseAPIURL(cfg.APIURL)
	if err != nil {
		return nil, err
	}
	a := &AppTokens{
		appID: cfg.AppID, key: cfg.Key, owner: cfg.Owner, repo: cfg.Repo,
		fixedID: cfg.InstallationID, installation: cfg.InstallationID,
		renew: cfg.Renew, now: cfg.Now, log: cfg.Logger, onRequest: cfg.OnRequest,
		sem: make(chan struct{}, 1),
	}
	if a.renew <= 0 {
		a.renew = DefaultRenew
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.log == nil {
		a.log = zap.NewNop()
	}
	if a.onRequest == nil {
		a.onRequest = func(string, string) {}
	}
	a.transport = newTransport()
	hc := &http.Client{
		Transport:     &headers{next: a.transport, jwt: a.jwt, origin: origin(base)},
		CheckRedirect: sameOrigin(base),
	}
	a.gh = github.NewClient(hc)
	a.gh.BaseURL = base
	a.gh.DisableRateLimitCheck = true
	a.gh.UserAgent = cfg.UserAgent
	if a.gh.UserAgent == "" {
		a.gh.UserAgent = defaultUserAgent
	}
	return a, nil
}

// ParseAppKey parses an app's private key as GitHub hands it out: PEM, in
// PKCS#1 ("RSA PRIVATE KEY") or PKCS#8 ("PRIVATE KEY"). Its errors never
// quote the key.
func ParseAppKey(data []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("not a PEM-encoded key")
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("a PEM block %q that is not an RSA private key", block.Type)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an RSA private key (GitHub Apps sign with RSA)", k)
	}
	return rk, nil
}

// jwt returns a JWT for the app, valid from a minute ago for 9 minutes.
func (a *AppTokens) jwt() (string, error) {
	now := a.now()
	claims := jwt.RegisteredClaims{
		Issuer:    strconv.FormatInt(a.appID, 10),
		IssuedAt:  jwt.NewNumericDate(now.Add(-jwtBackdate)),
		ExpiresAt: jwt.NewNumericDate(now.Add(-jwtBackdate + jwtLifetime)),
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodRS256, claims).SignedString(a.key)
	if err != nil {
		return "", fmt.Errorf("github app: signing the JWT: %w", err)
	}
	return s, nil
}

// Token returns an installation token that does not expire within Renew,
// asking GitHub for a new one when the one it has does.
func (a *AppTokens) Token(ctx context.Context) (string, error) {
	if t, ok := a.current(); ok {
		return t, nil
	}
	select {
	case a.sem <- struct{}{}:
	case <-ctx.Done():
		return "", fmt.Errorf("github app: waiting for an installation token: %w", ctx.Err())
	}
	defer func() { <-a.sem }()
	if t, ok := a.current(); ok {
		return t, nil // renewed while this call waited
	}
	return a.fetch(ctx)
}

// current returns the token held, if it is not due for renewal.
func (a *AppTokens) current() (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.token == "" || !a.now().Before(a.renewAt) {
		return "", false
	}
	return a.token, true
}

// Failed tells that token was refused (GitHub answered 401, or a fetch with
// it failed): it is not handed out again, and the next call gets a new one.
func (a *AppTokens) Failed(token string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if token != "" && token == a.token {
		a.token = ""
		a.log.Info("github app installation token dropped: it was refused or a fetch with it failed",
			zap.Time("expires_at", a.expires))
	}
}

// CloseIdleConnections closes the idle keep-alive connections of the
// requests for tokens.
func (a *AppTokens) CloseIdleConnections() { a.transport.CloseIdleConnections() }

// fetch asks GitHub for a new installation token, limited to the
// repository, looking the installation up first if needed; a.sem is held.
func (a *AppTokens) fetch(ctx context.Context) (string, error) {
	a.mu.Lock()
	id := a.installation
	a.mu.Unlock()
	if id == 0 {
		var inst *github.Installation
		_, err := callAPI(ctx, http.MethodGet, PathRepoInstallation, a.redact, func(ctx context.Context) (*github.Response, error) {
			var resp *github.Response
			var err error
			inst, resp, err = a.gh.Apps.FindRepositoryInstallation(ctx, a.owner, a.repo)
			return resp, err
		})
		if err != nil {
			a.onRequest(PathRepoInstallation, ResultError)
			return "", fmt.Errorf("github app: finding the app's installation on %s/%s (is the app installed there?): %w", a.owner, a.repo, err)
		}
		a.onRequest(PathRepoInstallation, ResultOK)
		if id = inst.GetID(); id <= 0 {
			return "", fmt.Errorf("github app: GitHub named no installation of the app on %s/%s", a.owner, a.repo)
		}
		a.mu.Lock()
		a.installation = id
		a.mu.Unlock()
	}
	var tok *github.InstallationToken
	resp, err := callAPI(ctx, http.MethodPost, PathAccessTokens, a.redact, func(ctx context.Context) (*github.Response, error) {
		var resp *github.Response
		var err error
		tok, resp, err = a.gh.Apps.CreateInstallationToken(ctx, id, &github.InstallationTokenOptions{Repositories: []string{a.repo}})
		return resp, err
	})
	if err != nil {
		a.onRequest(PathAccessTokens, ResultError)
		if resp != nil && resp.StatusCode == http.StatusNotFound && a.fixedID == 0 {
			// Uninstalled, or installed again under a new ID: look it up
			// again next time.
			a.mu.Lock()
			a.installation = 0
			a.mu.Unlock()
		}
		return "", fmt.Errorf("github app: getting an installation token: %w", err)
	}
	a.onRequest(PathAccessTokens, ResultOK)
	t := tok.GetToken()
	if t == "" || strings.ContainsAny(t, " \t\r\n\x00") || tok.ExpiresAt == nil {
		return "", errors.New("github app: getting an installation token: GitHub answered without a usable token and expiry")
	}
	expires := tok.GetExpiresAt().Time
	a.mu.Lock()
	if a.token != "" {
		a.old = append(a.old, a.token)
		if len(a.old) > 8 {
			a.old = a.old[len(a.old)-8:]
		}
	}
	a.token, a.expires, a.renewAt = t, expires, expires.Add(-a.renew)
	a.mu.Unlock()
	a.log.Info("github app installation token renewed", zap.Int64("installation", id), zap.Time("expires_at", expires))
	return t, nil
}

// redact removes the tokens given so far from s.
func (a *AppTokens) redact(s string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, t := range append(a.old, a.token) {
		if t != "" {
			s = strings.ReplaceAll(s, t, "[REDACTED]")
		}
	}
	return s
}
