package githubapi

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/githubtest"
)

// appEnv is a stand-in playing a GitHub App, and a Client whose requests
// take that app's installation tokens, both on one fake clock.
type appEnv struct {
	srv    *githubtest.Server
	tokens *AppTokens
	client *Client
	clock  *fakeClock
	counts *counts
	logs   *observer.ObservedLogs
	key    *rsa.PrivateKey
}

// setupApp starts the stand-in with app (its Key filled in) and the client,
// with cfg's InstallationID and Renew.
func setupApp(t *testing.T, app githubtest.App, cfg AppConfig) *appEnv {
	t.Helper()
	key, _ := githubtest.NewAppKey(t)
	app.Key = &key.PublicKey
	clock := newFakeClock()
	srv := githubtest.Start(t, githubtest.Options{App: &app, Now: clock.Now})
	core, logs := observer.New(zapcore.DebugLevel)
	e := &appEnv{srv: srv, clock: clock, counts: &counts{m: map[string]int{}}, logs: logs, key: key}
	cfg.APIURL, cfg.Key, cfg.Owner, cfg.Repo = srv.URL(), key, srv.Owner(), srv.Repo()
	cfg.Now, cfg.Logger, cfg.OnRequest = clock.Now, zap.New(core), e.counts.add
	if cfg.AppID == 0 {
		cfg.AppID = 424242
	}
	tokens, err := NewAppTokens(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tokens.CloseIdleConnections)
	c, err := New(Config{APIURL: srv.URL(), App: tokens, Owner: srv.Owner(), Repo: srv.Repo(), Logger: zap.New(core), OnRequest: e.counts.add})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	e.tokens, e.client = tokens, c
	return e
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// apiCalls returns the requests from the n-th on that are not the app's own
// (installation, tokens), and the app's own ones.
func (e *appEnv) requestsSince(n int) (api, app []githubtest.Request) {
	for _, r := range e.srv.Requests()[n:] {
		switch r.Operation {
		case "apps/get-repo-installation", "apps/create-installation-access-token":
			app = append(app, r)
		default:
			api = append(api, r)
		}
	}
	return api, app
}

// jwtClaims decodes the claims of the JWT that r carried.
func jwtClaims(t *testing.T, r githubtest.Request) map[string]any {
	t.Helper()
	parts := strings.Split(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), ".")
	if len(parts) != 3 {
		t.Fatalf("%s carried no JWT", r.Operation)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(b, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

// TestAppTokens: the first call looks the installation up and gets an
// installation token with a JWT that the app's key signed (iss the app's
// ID, iat a minute in the past, exp within 10 minutes: the stand-in checks
// them all, and the signature), limited to the repository; every API call
// carries that token; the token is kept until Renew before it expires,
// then replaced before any call uses it again, and calls after the renewal
// carry the new one only; a token past its expiry is never sent; a revoked
// token, answered 401, is dropped and the next call gets a new one; no
// token is in a log line or an error.
func TestAppTokens(t *testing.T) {
	e := setupApp(t, githubtest.App{ID: 424242, InstallationID: 31337}, AppConfig{Renew: 5 * time.Minute})
	ctx := context.Background()
	var errs []error

	start := e.clock.Now()
	if _, err := e.client.Checks(ctx, shaA, nil); err != nil {
		t.Fatalf("Checks: %v", err)
	}
	api, app := e.requestsSince(0)
	if len(app) != 2 || app[0].Operation != "apps/get-repo-installation" || app[1].Operation != "apps/create-installation-access-token" {
		t.Fatalf("the app's requests: %+v, want the installation looked up, then one token", app)
	}
	if app[1].Params["installation_id"] != "31337" {
		t.Errorf("token asked for installation %s, want the one looked up, 31337", app[1].Params["installation_id"])
	}
	if repos, _ := app[1].Body["repositories"].([]any); len(repos) != 1 || repos[0] != e.srv.Repo() {
		t.Errorf("token request body %v, want it limited to the repository %q", app[1].Body, e.srv.Repo())
	}
	for _, r := range app {
		c := jwtClaims(t, r)
		iat, _ := c["iat"].(float64)
		exp, _ := c["exp"].(float64)
		if c["iss"] != "424242" || int64(iat) != start.Unix()-60 || exp-iat > 600 || int64(exp) <= start.Unix() {
			t.Errorf("JWT claims %v: want iss 424242, iat %d (a minute ago), exp within 10 minutes of it", c, start.Unix()-60)
		}
	}
	tokens := e.srv.InstallationTokens()
	if len(tokens) != 1 {
		t.Fatalf("%d tokens issued, want 1", len(tokens))
	}
	first := tokens[0].Token
	if len(api) == 0 {
		t.Fatal("no API call")
	}
	for _, r := range api {
		if got := r.Header.Get("Authorization"); got != "Bearer "+first || r.Status != 200 {
			t.Errorf("%s: status %d, Authorization %q: want 200 with the installation token", r.Operation, r.Status, got)
		}
	}

	// Five minutes and one second before it expires, the token is still
	// used; at five minutes, it is replaced before the next call.
	e.clock.advance(time.Hour - 5*time.Minute - time.Second)
	n := len(e.srv.Requests())
	if _, err := e.client.Checks(ctx, shaA, nil); err != nil {
		t.Fatal(err)
	}
	if _, app := e.requestsSince(n); len(app) != 0 {
		t.Errorf("a token was asked for %v before its renewal time", app)
	}
	e.clock.advance(time.Second)
	n = len(e.srv.Requests())
	if _, err := e.client.Checks(ctx, shaA, nil); err != nil {
		t.Fatal(err)
	}
	api, app = e.requestsSince(n)
	tokens = e.srv.InstallationTokens()
	if len(app) != 1 || app[0].Operation != "apps/create-installation-access-token" || len(tokens) != 2 {
		t.Fatalf("at five minutes before expiry: app requests %d, tokens %d; want one new token, the installation known", len(app), len(tokens))
	}
	second := tokens[1].Token
	if !e.srv.CurrentToken(first) {
		t.Error("the first token is not current any more: the renewal came too late to prove anything")
	}
	for _, r := range api {
		if got := r.Header.Get("Authorization"); got != "Bearer "+second {
			t.Errorf("%s after the renewal carried %q, want the new token", r.Operation, got)
		}
	}

	// Long past both tokens' expiry (a suspended machine): a new one, and
	// the old one is never sent.
	e.clock.advance(3 * time.Hour)
	n = len(e.srv.Requests())
	if _, err := e.client.Checks(ctx, shaA, nil); err != nil {
		t.Fatalf("Checks after the token expired: %v", err)
	}
	api, _ = e.requestsSince(n)
	third := e.srv.InstallationTokens()[2].Token
	for _, r := range api {
		if got := r.Header.Get("Authorization"); got != "Bearer "+third {
			t.Errorf("%s after the expiry carried %q, want the third token", r.Operation, got)
		}
	}

	// Revoked: the call fails with 401, and the next gets a new token.
	e.srv.RevokeInstallationTokens()
	_, err := e.client.Checks(ctx, shaA, nil)
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("Checks with a revoked token = %v, want 401", err)
	}
	errs = append(errs, err)
	n = len(e.srv.Requests())
	if _, err := e.client.Checks(ctx, shaA, nil); err != nil {
		t.Fatalf("Checks after the revocation: %v", err)
	}
	api, app = e.requestsSince(n)
	if len(app) != 1 || len(e.srv.InstallationTokens()) != 4 {
		t.Fatalf("after the revocation: %d app requests, want one new token", len(app))
	}
	fourth := e.srv.InstallationTokens()[3].Token
	for _, r := range api {
		if got := r.Header.Get("Authorization"); got != "Bearer "+fourth {
			t.Errorf("%s after the revocation carried %q, want the new token", r.Operation, got)
		}
	}

	// GitHub echoing a token in a message: redacted.
	e.srv.FailNext(1, githubtest.Fault{Status: 422, Message: "token " + fourth + " cannot do this"})
	_, err = e.client.Checks(ctx, shaA, nil)
	if err == nil || !strings.Contains(err.Error(), "[REDACTED]") {
		t.Errorf("Checks = %v, want GitHub's message with the token redacted", err)
	}
	errs = append(errs, err)

	logs := logText(e.logs)
	if !strings.Contains(logs, "installation token renewed") {
		t.Errorf("no log line about the renewals:\n%s", logs)
	}
	for _, tok := range e.srv.InstallationTokens() {
		if strings.Contains(logs, tok.Token) {
			t.Errorf("a token in the logs:\n%s", logs)
		}
		for _, err := range errs {
			if err != nil && strings.Contains(err.Error(), tok.Token) {
				t.Errorf("a token in an error: %v", err)
			}
		}
	}
}

// TestAppTokensConcurrent: calls that find no token at once cause one
// request for a token, which they all use.
func TestAppTokensConcurrent(t *testing.T) {
	e := setupApp(t, githubtest.App{}, AppConfig{InstallationID: 7700770})
	var wg sync.WaitGroup
	got := make([]string, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := e.tokens.Token(context.Background())
			if err != nil {
				t.Error(err)
			}
			got[i] = tok
		}()
	}
	wg.Wait()
	issued := e.srv.InstallationTokens()
	if len(issued) != 1 {
		t.Fatalf("%d tokens issued for 8 callers at once, want 1", len(issued))
	}
	for _, tok := range got {
		if tok != issued[0].Token {
			t.Errorf("a caller got %q, want the one token issued", tok)
		}
	}
	if _, app := e.requestsSince(0); len(app) != 1 {
		t.Errorf("%d app requests, want the token only: the installation ID was given", len(app))
	}
}

// TestAppTokensErrors: an installation that is not the app's, a key that is
// not the app's, and a token that lives less than Renew.
func TestAppTokensErrors(t *testing.T) {
	e := setupApp(t, githubtest.App{}, AppConfig{InstallationID: 99})
	_, err := e.tokens.Token(context.Background())
	if err == nil || err.Error() != "github app: getting an installation token: POST /app/installations/{installation_id}/access_tokens: 404 Not Found: Not Found" {
		t.Errorf("Token with another installation = %v", err)
	}

	wrong := setupApp(t, githubtest.App{}, AppConfig{})
	other, _ := githubtest.NewAppKey(t)
	wrong.tokens.key = other
	_, err = wrong.tokens.Token(context.Background())
	if err == nil || !strings.Contains(err.Error(), "finding the app's installation on octo-org/site") || !strings.Contains(err.Error(), "401") {
		t.Errorf("Token signed with another key = %v", err)
	}
	if v := wrong.srv.TakeViolations(); len(v) != 1 || !strings.Contains(v[0], "signature does not verify") {
		t.Errorf("the stand-in saw %q, want the bad signature", v)
	}

	// GitHub gives a token with less left than Renew: used for the call
	// that asked, a new one for the next.
	short := setupApp(t, githubtest.App{TokenLifetime: 2 * time.Minute}, AppConfig{})
	a, _ := short.tokens.Token(context.Background())
	b, _ := short.tokens.Token(context.Background())
	if a == "" || a == b || len(short.srv.InstallationTokens()) != 2 {
		t.Errorf("tokens %q then %q: want a new one for each call", a, b)
	}
}

// TestParseAppKey: the app's key in PKCS#1 or PKCS#8; anything else is an
// error that does not quote it.
func TestParseAppKey(t *testing.T) {
	key, file := githubtest.NewAppKey(t)
	pkcs1, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	pkcs8 := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	for name, data := range map[string][]byte{"pkcs1": pkcs1, "pkcs8": pkcs8} {
		got, err := ParseAppKey(data)
		if err != nil || !got.Equal(key) {
			t.Errorf("%s: %v", name, err)
		}
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	for name, data := range map[string][]byte{
		"not pem":  []byte("SECRETSECRET"),
		"ec":       pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}),
		"bad body": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte("SECRETSECRET")}),
	} {
		_, err := ParseAppKey(data)
		if err == nil || strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "MII") {
			t.Errorf("%s: error %v", name, err)
		}
	}
}
