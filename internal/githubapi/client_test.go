package githubapi

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/githubtest"
)

// TestTokenNeverLeaks drives every path that makes an error or a log line
// (bad credentials, a message that echoes the token, no server at all) and
// looks for the token in all of them.
func TestTokenNeverLeaks(t *testing.T) {
	e := setup(t, githubtest.Options{Token: "the-right-one"}, token)
	var errs []error
	_, err := e.client.Checks(context.Background(), shaA, nil)
	errs = append(errs, err)
	if err == nil || err.Error() != "reading the check runs of "+shaA+": GET /repos/{owner}/{repo}/commits/{ref}/check-runs: 401 Unauthorized: Bad credentials" {
		t.Errorf("Checks with a wrong token = %v, want the endpoint, 401 and GitHub's message", err)
	}

	echo := setup(t, githubtest.Options{Token: token}, "")
	echo.srv.FailNext(1, githubtest.Fault{Status: http.StatusUnprocessableEntity, Message: "token " + token + " is not valid here"})
	_, err = echo.client.Checks(context.Background(), shaA, nil)
	errs = append(errs, err)
	if err == nil || !strings.Contains(err.Error(), "token [REDACTED] is not valid here") {
		t.Errorf("Checks = %v, want GitHub's message with the token redacted", err)
	}
	r, _ := echo.reporter(t, ReporterConfig{})
	echo.srv.FailNext(1, githubtest.Fault{Status: http.StatusUnprocessableEntity, Message: "token " + token + " is not valid here"})
	r.Start()
	r.Started(shaA, "push")
	r.Failed(shaA, "build failed")
	flush(t, r)

	down := setup(t, githubtest.Options{Token: token}, "")
	down.srv.Close()
	_, err = down.client.Checks(context.Background(), shaA, nil)
	errs = append(errs, err)
	if err == nil || !strings.HasPrefix(err.Error(), "reading the check runs of "+shaA+": GET /repos/{owner}/{repo}/commits/{ref}/check-runs: ") {
		t.Errorf("Checks with GitHub unreachable = %v, want the endpoint named", err)
	}
	rd, _ := down.reporter(t, ReporterConfig{MaxAttempts: 2})
	rd.Start()
	rd.Started(shaA, "push")
	flush(t, rd)

	for _, err := range errs {
		if err != nil && strings.Contains(err.Error(), token) {
			t.Errorf("error shows the token: %v", err)
		}
	}
	for _, en := range []*env{e, echo, down} {
		logs := logText(en.logs)
		if strings.Contains(logs, token) {
			t.Errorf("logs show the token:\n%s", logs)
		}
		if en != e && !strings.Contains(logs, "github deployment report") {
			t.Errorf("no log line about the failed report, so this test proves nothing:\n%s", logs)
		}
	}
}

// TestEnterpriseServer checks that api_url https://HOST/api/v3 sends every
// call under /api/v3, as GitHub Enterprise Server serves it.
func TestEnterpriseServer(t *testing.T) {
	for _, suffix := range []string{"", "/"} {
		t.Run("api_url ending in "+suffix, func(t *testing.T) {
			srv := githubtest.Start(t, githubtest.Options{Token: token, Prefix: "/api/v3"})
			c, err := New(Config{APIURL: srv.URL() + suffix, Token: token, Owner: srv.Owner(), Repo: srv.Repo()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.CloseIdleConnections)
			srv.SetCheckRuns(shaA, ok("build"))
			if v, err := c.Checks(context.Background(), shaA, []string{"build"}); err != nil || v.State != Passed {
				t.Fatalf("Checks = %+v, %v", v, err)
			}
			r, err := c.NewReporter(ReporterConfig{Environment: "staging"})
			if err != nil {
				t.Fatal(err)
			}
			r.Start()
			r.Started(shaA, "push")
			r.Succeeded(shaA, "https://staging.example.com")
			flush(t, r)
			d := srv.Deployments()
			if len(d) != 1 || d[0].Environment != "staging" || len(d[0].Statuses) != 2 {
				t.Errorf("deployments = %+v, want one in staging with two statuses", d)
			}
			for _, req := range srv.Requests() {
				if !strings.HasPrefix(req.Path, "/api/v3/repos/") {
					t.Errorf("request to %s, want it under /api/v3", req.Path)
				}
				if ua := req.Header.Get("User-Agent"); ua != "caddy-github-webhook" {
					t.Errorf("User-Agent %q", ua)
				}
			}
		})
	}
}

func TestParseAPIURL(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{"", "https://api.github.com/", ""},
		{"https://api.github.com", "https://api.github.com/", ""},
		{"https://ghe.example.com/api/v3", "https://ghe.example.com/api/v3/", ""},
		{"https://ghe.example.com/api/v3/", "https://ghe.example.com/api/v3/", ""},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080/", ""},
		{"https://user:pass@ghe.example.com/api/v3", "", "must not carry credentials"},
		{"ftp://ghe.example.com", "", `scheme "ftp"`},
		{"ghe.example.com/api/v3", "", "scheme"},
		{"https://ghe.example.com/api/v3?x=1", "", "query"},
	}
	for _, tt := range tests {
		u, err := parseAPIURL(tt.in)
		switch {
		case tt.err != "":
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parseAPIURL(%q) error = %v, want %q", tt.in, err, tt.err)
			}
			if err != nil && strings.Contains(err.Error(), "pass") {
				t.Errorf("parseAPIURL(%q) error shows the password: %v", tt.in, err)
			}
		case err != nil:
			t.Errorf("parseAPIURL(%q) = %v", tt.in, err)
		case u.String() != tt.want:
			t.Errorf("parseAPIURL(%q) = %s, want %s", tt.in, u, tt.want)
		}
	}
}

// TestRedirectKeepsToken: api_url's server answers every call with a
// redirect to another server (another port of 127.0.0.1, another origin as
// much as another host is), over http or from https down to http. The client
// refuses to follow: the other server never gets a request, let alone the
// token, and the call fails with an error that names the endpoint and where
// it was sent, never the token. A redirect within api_url's own origin (as
// GitHub answers for a renamed repository) is followed, with the token.
func TestRedirectKeepsToken(t *testing.T) {
	var mu sync.Mutex
	var seen []string // Authorization headers the other server got
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path+" Authorization="+r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"total_count":0,"check_runs":[],"statuses":[],"workflow_runs":[],"state":"success"}`)
	}))
	t.Cleanup(other.Close)
	redirect := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	})
	for _, tls := range []bool{false, true} {
		name := "http to another port"
		if tls {
			name = "https down to http"
		}
		t.Run(name, func(t *testing.T) {
			var front *httptest.Server
			if tls {
				front = httptest.NewTLSServer(redirect)
			} else {
				front = httptest.NewServer(redirect)
			}
			t.Cleanup(front.Close)
			core, logs := observer.New(zapcore.DebugLevel)
			c, err := New(Config{APIURL: front.URL, Token: token, Owner: "octo-org", Repo: "site", Logger: zap.New(core)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.CloseIdleConnections)
			if tls {
				c.transport.TLSClientConfig = front.Client().Transport.(*http.Transport).TLSClientConfig
			}

			_, err = c.Checks(context.Background(), shaA, nil)
			want := "reading the check runs of " + shaA + ": GET /repos/{owner}/{repo}/commits/{ref}/check-runs: 307 Temporary Redirect: redirected to " +
				other.URL + ": refused, only " + front.URL + " is asked"
			if err == nil || err.Error() != want {
				t.Errorf("Checks through a redirect = %v\nwant %s", err, want)
			}
			r, err := c.NewReporter(ReporterConfig{Environment: "production", MaxAttempts: 1})
			if err != nil {
				t.Fatal(err)
			}
			r.Start()
			r.Started(shaA, "push")
			flush(t, r)

			mu.Lock()
			defer mu.Unlock()
			if len(seen) > 0 {
				t.Errorf("the other server was asked:\n%s", strings.Join(seen, "\n"))
			}
			if err != nil && strings.Contains(err.Error(), token) || strings.Contains(logText(logs), token) {
				t.Errorf("the token shows in the error or the logs")
			}
			if !strings.Contains(logText(logs), "redirected to "+other.URL+": refused") {
				t.Errorf("the reporter's log does not say the redirect was refused:\n%s", logText(logs))
			}
		})
	}

	t.Run("within api_url's origin", func(t *testing.T) {
		gh := githubtest.Start(t, githubtest.Options{Token: token})
		gh.SetCheckRuns(shaA, ok("build"))
		moved := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if rest, found := strings.CutPrefix(r.URL.Path, "/old"); found {
				u := *r.URL
				u.Path = rest
				http.Redirect(w, r, u.String(), http.StatusMovedPermanently)
				return
			}
			gh.ServeHTTP(w, r)
		}))
		t.Cleanup(moved.Close)
		c, err := New(Config{APIURL: moved.URL + "/old", Token: token, Owner: gh.Owner(), Repo: gh.Repo()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.CloseIdleConnections)
		if v, err := c.Checks(context.Background(), shaA, nil); err != nil || v.State != Passed {
			t.Errorf("Checks through a redirect within the origin = %+v, %v; want passed", v, err)
		}
	})
}
