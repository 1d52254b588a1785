package caddywebhook

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	zapobserver "go.uber.org/zap/zaptest/observer"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/githubtest"
)

// appSite is a test site whose repository is private on a GitHub played by
// the stand-in: git over https and the API both take only a current
// installation token of the app.
type appSite struct {
	*testSite
	srv     *githubtest.Server
	git     *githubtest.GitServer
	keyFile string
	keyPEM  string
}

// newAppSite starts the stand-in as a GitHub App whose installation tokens
// live lifetime, and its git server for the site's repository.
func newAppSite(t *testing.T, lifetime time.Duration) *appSite {
	t.Helper()
	key, keyFile := githubtest.NewAppKey(t)
	pemBytes, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	owner, name, _ := strings.Cut(testRepo, "/")
	srv := githubtest.Start(t, githubtest.Options{Owner: owner, Repo: name,
		App: &githubtest.App{ID: 424242, Key: &key.PublicKey, TokenLifetime: lifetime}})
	s := &appSite{testSite: newTestSite(t), srv: srv, keyFile: keyFile, keyPEM: string(pemBytes)}
	s.git = srv.StartGit(t, filepath.Dir(s.repo.Bare))
	s.git.Trust(t)
	return s
}

// caddyfile is the site's Caddyfile with app in place of token and the
// stand-in's git server as the remote.
func (s *appSite) caddyfile(extra string) string {
	c := s.testSite.caddyfile("app 424242 " + s.keyFile + "\n api_url " + s.srv.URL() + "\n " + extra)
	c = strings.Replace(c, "token    {env.CWH_TEST_TOKEN}\n", "", 1)
	return strings.Replace(c, "remote   "+s.repo.Bare+"\n", "remote   "+s.git.URL()+"/"+filepath.Base(s.repo.Bare)+"\n", 1)
}

// tokens returns the installation tokens issued so far.
func (s *appSite) tokens() []string {
	var list []string
	for _, t := range s.srv.InstallationTokens() {
		list = append(list, t.Token)
	}
	return list
}

// gitPasswords returns the passwords of the git requests from the n-th on
// that carried one.
func (s *appSite) gitPasswords(n int) []string {
	var list []string
	for _, a := range s.git.Auth()[n:] {
		if a.Password != "" {
			list = append(list, a.Password)
		}
	}
	return list
}

// TestGitHubAppThroughCaddy: with `app`, Caddy's deployer fetches from a
// private repository and reports deployments with the app's installation
// tokens only: the stand-in gives a token only for a JWT that the app's key
// signed (it checks the signature, iss and times: any other is a
// violation), accepts API calls and git requests only with a current
// token, and issues tokens that live 5 minutes and 2 seconds, so that the
// module's 5-minute margin renews them after 2 seconds. Every API call and
// every fetch carries an issued token; a fetch after the renewal uses the
// new token; a revoked token fails one fetch, is dropped, and the retry
// uses a new one; no token is in Caddy's log, the status or an error, and
// neither the key nor a token is in the adapted JSON.
func TestGitHubAppThroughCaddy(t *testing.T) {
	s := newAppSite(t, 5*time.Minute+2*time.Second)
	first := s.repo.Commit("first version", map[string]string{"index.html": "first"})
	config := s.caddyfile("deployments production " + siteAddress)
	s.start(config)
	s.waitLive(first)
	waitStates(t, s.srv, first, "in_progress", "success")

	issued := s.tokens()
	if len(issued) == 0 {
		t.Fatal("no installation token was issued")
	}
	passwords := s.gitPasswords(0)
	if len(passwords) == 0 {
		t.Fatal("no git request carried a token")
	}
	for _, pw := range passwords {
		if !slices.Contains(issued, pw) {
			t.Errorf("a git request carried %q, not an installation token", pw)
		}
	}
	for _, a := range s.git.Auth() {
		if a.Password != "" && !a.Accepted {
			t.Errorf("a git request carried a token that was not current: %q", a.Password)
		}
	}

	// The next tokens live an hour; the first one is due for renewal
	// after 2 seconds, long before it expires.
	s.srv.SetTokenLifetime(time.Hour)
	firstToken := s.srv.InstallationTokens()[len(issued)-1]
	time.Sleep(time.Until(firstToken.ExpiresAt.Add(-5*time.Minute)) + 100*time.Millisecond)
	n := len(s.git.Auth())
	second := s.repo.Commit("second version", map[string]string{"index.html": "second"})
	pushDelivery(t, testSecret)
	s.waitLive(second)
	waitStates(t, s.srv, second, "in_progress", "success")
	renewed := s.tokens()
	if len(renewed) <= len(issued) {
		t.Fatalf("no token issued after the first was due for renewal (%d tokens)", len(renewed))
	}
	if !s.srv.CurrentToken(firstToken.Token) {
		t.Error("the first token expired before the renewal: it proves nothing")
	}
	newest := renewed[len(renewed)-1]
	for _, pw := range s.gitPasswords(n) {
		if pw != newest {
			t.Errorf("the fetch after the renewal carried %q, want the renewed token", pw)
		}
	}

	// Revoked: the fetch with it fails, the token is dropped, the retry
	// (2 s later) gets a new one.
	s.srv.RevokeInstallationTokens()
	n = len(s.git.Auth())
	third := s.repo.Commit("third version", map[string]string{"index.html": "third"})
	pushDelivery(t, testSecret)
	s.waitLive(third)
	rejected := 0
	for _, a := range s.git.Auth()[n:] {
		if a.Password == newest {
			rejected++
		}
	}
	if rejected != 1 {
		t.Errorf("the revoked token was sent %d times to git, want once (the fetch that found it revoked)", rejected)
	}
	waitStates(t, s.srv, third, "in_progress", "success")

	// Every API call carried a current token, or a JWT for the app's own.
	for _, r := range s.srv.Requests() {
		switch r.Operation {
		case "apps/get-repo-installation", "apps/create-installation-access-token":
			if r.Status/100 != 2 {
				t.Errorf("%s answered %d", r.Operation, r.Status)
			}
		default:
			auth := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !slices.Contains(s.tokens(), auth) {
				t.Errorf("%s carried no installation token", r.Operation)
			}
		}
	}
	if v := s.srv.Violations(); len(v) > 0 {
		t.Errorf("requests GitHub would refuse: %v", v)
	}

	// Nowhere: Caddy's log, the status, the adapted JSON.
	logBytes, _ := os.ReadFile(s.log)
	st, _ := json.Marshal(s.status())
	adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(config), nil)
	if err != nil {
		t.Fatal(err)
	}
	keyBody := strings.Split(s.keyPEM, "\n")[2]
	for _, tok := range append(s.tokens(), keyBody) {
		for where, text := range map[string]string{"Caddy's log": string(logBytes), "the status": string(st), "the adapted JSON": string(adapted)} {
			if strings.Contains(text, tok) {
				t.Errorf("%s holds a token or the key", where)
			}
		}
	}
	if !strings.Contains(string(logBytes), "installation token renewed") || !strings.Contains(string(logBytes), "fetching") {
		t.Error("Caddy's log has no renewal or no failed fetch: the check above proves little")
	}
	if !strings.Contains(string(adapted), `"key_file":"`+s.keyFile+`"`) {
		t.Errorf("the adapted JSON lacks the key file's name: %s", adapted)
	}
}

// TestGitHubAppProvisionErrors: a key file that is missing, or not an RSA
// key, is refused at load with an error naming the file and never quoting
// it; app with token, or with an app ID of 0, is refused too.
func TestGitHubAppProvisionErrors(t *testing.T) {
	dir := t.TempDir()
	notKey := filepath.Join(dir, "not-a-key.pem")
	if err := os.WriteFile(notKey, []byte("-----BEGIN RSA PRIVATE KEY-----\nU0VDUkVUU0VDUkVU\n-----END RSA PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(text, []byte("SECRETSECRET"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, good := githubtest.NewAppKey(t)
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name string
		app  GitHubApp
		tok  string
		want string
	}{
		{"missing", GitHubApp{AppID: 1, KeyFile: missing}, "", "app: key file " + missing + ": open"},
		{"not a key", GitHubApp{AppID: 1, KeyFile: notKey}, "", "app: key file " + notKey + ": not the RSA private key of a GitHub App"},
		{"not pem", GitHubApp{AppID: 1, KeyFile: text}, "", "app: key file " + text + ": not the RSA private key"},
		{"with token", GitHubApp{AppID: 1, KeyFile: good}, "ghp_x", "app and token are both set"},
		{"no app id", GitHubApp{KeyFile: good}, "", "app ID must be a positive number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			h := Handler{Repo: "octocat/blog", Secret: []string{"s3cret-value-long-enough"}, Path: filepath.Join(dir, "site"),
				Token: tc.tok, App: &tc.app}
			err := h.Provision(ctx)
			if cerr := h.Cleanup(); cerr != nil {
				t.Errorf("cleanup: %v", cerr)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one with %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "U0VD") {
				t.Errorf("the error quotes the file: %v", err)
			}
		})
	}
}

// TestGitHubAppKeyFile: the key file is hidden from sandboxed builds, the
// deployer asks the app's token source, and a key readable by other users
// loads with a warning naming the file.
func TestGitHubAppKeyFile(t *testing.T) {
	_, file := githubtest.NewAppKey(t)
	for _, mode := range []os.FileMode{0o600, 0o644} {
		if err := os.Chmod(file, mode); err != nil {
			t.Fatal(err)
		}
		core, logs := zapobserver.New(zapcore.WarnLevel)
		h := Handler{Repo: "octocat/blog", App: &GitHubApp{AppID: 7, KeyFile: file}, logger: zap.New(core)}
		if err := h.provisionApp(); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(h.cfg.Hide, file) || h.cfg.TokenSource == nil || h.appTokens == nil {
			t.Errorf("mode %o: deployer config %+v: want the key file hidden and the token source set", mode, h.cfg)
		}
		warned := logs.FilterMessageSnippet("readable by other users").Len() == 1
		if warned != (mode == 0o644) {
			t.Errorf("mode %o: warned %v", mode, warned)
		}
	}
}
