package caddywebhook

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	zapobserver "go.uber.org/zap/zaptest/observer"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// TestStartRefusesRoutes: configurations that adapt and provision, but whose
// routes serve the wrong thing, are refused when Caddy runs them, with the
// line to write instead, before any deployer takes its folder. On main each
// loaded: a root at the deployer's folder served state.json and cache.git;
// github_webhook * answered every page of the site with 405.
func TestStartRefusesRoutes(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(s *testSite, config string) string
		want string
	}{
		{
			name: "root after github_webhook at the folder",
			edit: func(s *testSite, config string) string {
				config = strings.Replace(config, "root * "+s.path+"/current\n", "", 1)
				return strings.TrimSuffix(config, "}\n") + "\troot * " + s.path + "\n}\n"
			},
			want: "root {path} serves the folder of github_webhook's deployer (state.json, cache.git, build logs) " +
				"instead of the site: write root * {path}/current",
		},
		{
			name: "file_server's root at the folder",
			edit: func(s *testSite, config string) string {
				config = strings.Replace(config, "root * "+s.path+"/current\n", "", 1)
				return strings.Replace(config, "\tfile_server\n", "\tfile_server {\n\t\troot "+s.path+"\n\t}\n", 1)
			},
			want: "file_server's root {path} serves the folder of github_webhook's deployer (state.json, cache.git, build logs) " +
				"instead of the site: write file_server { root {path}/current }",
		},
		{
			name: "github_webhook * before file_server",
			edit: func(s *testSite, config string) string {
				return strings.Replace(config, "github_webhook /_github {", "github_webhook * {", 1)
			},
			want: "the github_webhook handler of {path} has no matcher, so it answers every request and file_server " +
				"after it is never reached (every page is answered 405): give it one: github_webhook /_github { ... } in a Caddyfile",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestSite(t)
			startCaddy(t)
			t.Cleanup(func() { loadConfig(emptyConfig) })
			err := loadConfig(tc.edit(s, s.caddyfile("")))
			want := strings.ReplaceAll(tc.want, "{path}", s.path)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("loading: %v\nwant an error with %q", err, want)
			}
			if _, err := os.Lstat(s.path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the refused configuration created the deployer's folder: %v", err)
			}
		})
	}
}

// TestLoadWarnings: what loads but will not work as meant is logged as a
// warning when Caddy loads it, naming what to do: a literal secret or token
// ("prefer {env.*} or {file.*}"), and a build program that is not on the
// commands' PATH (the program and the PATH), before the first deploy fails
// on it. The warnings never hold the secret. On main nothing was logged.
func TestLoadWarnings(t *testing.T) {
	s := newTestSite(t)
	const literalSecret, literalToken = "literal-secret-5f0d0c2a9e", "ghp_literaltoken7a61c2e0"
	config := strings.Replace(s.caddyfile("secret "+literalSecret+"\n\t\tcommand no-such-builder-xyz --minify\n\t\tcommand sh -c true"),
		"token    {env.CWH_TEST_TOKEN}", "token "+literalToken, 1)
	s.repo.Commit("first version", map[string]string{"index.html": "first"})
	s.start(config)
	var st = s.status()
	testkit.WaitFor(t, time.Minute, "the first deploy to fail", func() error {
		if st = s.status(); st.Last == nil || st.Last.Result != "error" {
			return errors.New("not yet")
		}
		return nil
	})

	log, err := os.ReadFile(s.log)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{literalSecret, literalToken} {
		if bytes.Contains(log, []byte(secret)) {
			t.Errorf("Caddy's log holds the literal %q", secret)
		}
	}
	entries, err := testkit.ParseLog(bytes.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	var secretWarn, tokenWarn, programWarn bool
	for _, e := range entries {
		if !e.From("http.handlers.github_webhook") || e.Level != "warn" {
			continue
		}
		switch {
		case strings.HasPrefix(e.Msg, "a webhook secret is written into the configuration") &&
			strings.Contains(e.Msg, "prefer {env.*} or {file.*}") && e.Str("secret") == "secret 3":
			secretWarn = true
		case strings.HasPrefix(e.Msg, "the token is written into the configuration") &&
			strings.Contains(e.Msg, "prefer {env.*} or {file.*}"):
			tokenWarn = true
		case strings.HasPrefix(e.Msg, "a build program is not on the PATH of the commands"):
			if e.Str("program") != "no-such-builder-xyz" || e.Str("path_env") != os.Getenv("PATH") {
				t.Errorf("program warning names %q and PATH %q", e.Str("program"), e.Str("path_env"))
			}
			programWarn = true
		case e.Str("program") == "sh":
			t.Errorf("warned about sh, which is on PATH: %s", e.Msg)
		}
	}
	if !secretWarn || !tokenWarn || !programWarn {
		t.Errorf("warnings: literal secret %v, literal token %v, program not found %v; want all", secretWarn, tokenWarn, programWarn)
	}
	if !strings.Contains(st.Last.Error, `exec: "no-such-builder-xyz": executable file not found in $PATH`) ||
		!strings.Contains(st.Last.OutputTail, "install it where the user Caddy runs as finds it") {
		t.Errorf("first deploy: error %q, output tail %q", st.Last.Error, st.Last.OutputTail)
	}
}

// TestWarnEnvSubstitution: `secret {$NAME}` is replaced with the variable's
// value when the Caddyfile is read, before the adapter sees it, so the
// secret stands in the adapted JSON. The adapter recognises the value as a
// variable's and warns, at the secret's line, to write {env.NAME}, without
// logging the value; a placeholder or another literal is not warned about
// here (Provision warns about literals).
func TestWarnEnvSubstitution(t *testing.T) {
	const value = "adapt-time-secret-3b9e71"
	t.Setenv("CWH_SUBST_SECRET", value)
	t.Setenv("CWH_SUBST_TOKEN", value+"-token")
	input := "github_webhook {\n" +
		"\trepo octocat/blog\n" +
		"\tsecret " + value + "\n" +
		"\tsecret {env.CWH_OTHER}\n" +
		"\tsecret some-literal-nobody-exports\n" +
		"\tcommand echo secret " + value + "\n" +
		"\ttoken " + value + "-token\n" +
		"}"
	core, logs := zapobserver.New(zapcore.DebugLevel)
	h := httpcaddyfile.Helper{Dispenser: caddyfile.NewTestDispenser(input)}
	h.Next()
	warnCaddyfile(h, zap.New(core))

	var got []string
	for _, e := range logs.All() {
		if strings.Contains(e.Message, value) {
			t.Errorf("the warning holds the value: %s", e.Message)
		}
		f := e.ContextMap()
		got = append(got, f["variable"].(string)+"@"+f["file"].(string)+":"+string(rune('0'+f["line"].(int64))))
		if !strings.Contains(e.Message, "write {env."+f["variable"].(string)+"}") {
			t.Errorf("warning %q does not say to write {env.%s}", e.Message, f["variable"])
		}
	}
	if want := []string{"CWH_SUBST_SECRET@Testfile:3", "CWH_SUBST_TOKEN@Testfile:7"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("warnings %v, want %v", got, want)
	}
}

// TestPlaceholderThroughCaddy: a new site answers its first GET, before
// any release exists, with 200 and a short page that says it is deploying
// and refreshes itself (on main: a blank 404); once the first deploy is
// done, the site itself.
func TestPlaceholderThroughCaddy(t *testing.T) {
	s := newTestSite(t)
	gate := filepath.Join(t.TempDir(), "go-on")
	s.repo.Commit("first version", map[string]string{"index.html": "first"})
	first := strings.TrimSpace(s.repo.Git("rev-parse", "HEAD"))
	s.start(s.caddyfile("env GATE " + gate + "\n\t\tcommand sh -c `while [ ! -e \"$GATE\" ]; do sleep 0.05; done`"))

	resp, err := http.Get(siteURL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Deploying "+testRepo+"… this page refreshes") ||
		!strings.Contains(string(body), `<meta http-equiv="refresh"`) {
		t.Fatalf("GET / before the first deploy: %s\n%s", resp.Status, body)
	}
	if st := s.status(); st.Live != nil {
		t.Errorf("live %+v before the first deploy", st.Live)
	}

	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s.waitLive(first)
	if got := get(t, siteURL+"/"); got != "first" {
		t.Errorf("GET / after the first deploy = %q, want the site", got)
	}
}
