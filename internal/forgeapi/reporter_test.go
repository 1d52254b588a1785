package forgeapi

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/apiretry"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/forgetest"
)

// TestReporterStatuses: each forge's status API gets pending (GitLab
// running, Bitbucket INPROGRESS) then success with the site's link, pending
// then failure with the failure's line, the interrupted state, and a
// rollback as success again, under the name deploy/production (Bitbucket:
// the key deploy-production), with the token as that forge takes it on
// every request.
func TestReporterStatuses(t *testing.T) {
	interrupted := map[Kind]string{Gitea: "error", Forgejo: "error", GitLab: "canceled", Bitbucket: "STOPPED"}
	for _, k := range kinds {
		t.Run(string(k.kind), func(t *testing.T) {
			repo := ""
			if k.kind == GitLab {
				repo = "octo-org/web/site" // a project in a subgroup
			}
			c, srv, cnt := newClient(t, k.kind, repo)
			r := fastReporter(t, c)
			r.Started(sha1, "push")
			r.Succeeded(sha1, siteURL)
			r.Started(sha2, "push")
			r.Failed(sha2, "build failed: hugo\nexited 1")
			r.Interrupted(sha3)
			r.RolledBack(sha1, siteURL)
			flush(t, r)

			name := "deploy/production"
			if k.kind == Bitbucket {
				name = "deploy-production"
			}
			want := []forgetest.Status{
				{Commit: sha1, State: k.pending},
				{Commit: sha1, State: k.passed, TargetURL: siteURL, Description: "deployed"},
				{Commit: sha2, State: k.pending},
				{Commit: sha2, State: k.failed, Description: "build failed: hugo exited 1"},
				{Commit: sha3, State: interrupted[k.kind], Description: "interrupted; deploys again on start"},
				{Commit: sha1, State: k.passed, TargetURL: siteURL, Description: "rolled back"},
			}
			got := srv.Created()
			if len(got) != len(want) {
				t.Fatalf("statuses created: %+v, want %d", got, len(want))
			}
			for i, w := range want {
				g := got[i]
				if g.Commit != w.Commit || g.State != w.State || g.Name != name {
					t.Errorf("status %d: %s %q on %s, want %s %q on %s", i, g.Name, g.State, g.Commit[:7], name, w.State, w.Commit[:7])
				}
				if w.Description != "" && g.Description != w.Description {
					t.Errorf("status %d: description %q, want %q", i, g.Description, w.Description)
				}
				if w.TargetURL != "" && g.TargetURL != w.TargetURL {
					t.Errorf("status %d: target URL %q, want %q", i, g.TargetURL, w.TargetURL)
				}
				if k.kind != Bitbucket && w.TargetURL == "" && g.TargetURL != "" {
					t.Errorf("status %d: target URL %q, want none", i, g.TargetURL)
				}
			}
			if k.kind == Bitbucket && !strings.HasPrefix(got[0].TargetURL, "https://bitbucket.org/octo-org/site/commits/") {
				t.Errorf("Bitbucket status without the site's link: url %q, want the commit's page", got[0].TargetURL)
			}
			for _, req := range srv.Requests() {
				if req.Status != http.StatusCreated {
					t.Errorf("%s %s answered %d", req.Method, req.Path, req.Status)
				}
				var cred string
				switch k.kind {
				case GitLab:
					cred = req.Header.Get("PRIVATE-TOKEN")
				case Bitbucket:
					cred = strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer ")
				default:
					cred = strings.TrimPrefix(req.Header.Get("Authorization"), "token ")
				}
				if cred != token {
					t.Errorf("%s %s: credential %q, want the token as %s takes it", req.Method, req.Path, cred, k.kind)
				}
			}
			if n := cnt.get(r.path(), apiretry.ResultOK); n != len(want) {
				t.Errorf("%d requests counted ok, want %d", n, len(want))
			}
		})
	}
}

// TestReporterRetries: a 500 and a rate limit are retried (Retry-After
// honoured), the report lands, and each request is counted by its result; a
// 422 (the forge refusing the request) is given up at once.
func TestReporterRetries(t *testing.T) {
	for _, k := range kinds {
		t.Run(string(k.kind), func(t *testing.T) {
			c, srv, cnt := newClient(t, k.kind, "")
			// A clock that sleeps by moving on.
			var slept []time.Duration
			clock := time.Now()
			r, err := c.NewReporter(ReporterConfig{}, WithBackoff(time.Millisecond, time.Millisecond),
				WithClock(func() time.Time { return clock }, func(_ context.Context, d time.Duration) error {
					slept = append(slept, d)
					clock = clock.Add(d)
					return nil
				}))
			if err != nil {
				t.Fatal(err)
			}
			srv.FailNext(1, forgetest.Fault{Status: http.StatusInternalServerError})
			srv.FailNext(1, forgetest.Fault{Status: http.StatusTooManyRequests, RetryAfter: "7"})
			r.Start()
			r.Succeeded(sha1, siteURL)
			flush(t, r)
			if got := srv.Created(); len(got) != 1 || got[0].State != k.passed {
				t.Fatalf("statuses created: %+v, want one %s", got, k.passed)
			}
			if len(slept) != 2 || slept[1] != 7*time.Second {
				t.Errorf("waits %v, want the backoff then Retry-After's 7s", slept)
			}
			if cnt.get(r.path(), apiretry.ResultRetry) != 2 || cnt.get(r.path(), apiretry.ResultOK) != 1 {
				t.Errorf("counted %v, want 2 retries and 1 ok", cnt.calls)
			}

			c2, srv2, cnt2 := newClient(t, k.kind, "")
			r2 := fastReporter(t, c2)
			srv2.FailNext(5, forgetest.Fault{Status: http.StatusUnprocessableEntity})
			r2.Failed(sha2, "deploy failed")
			flush(t, r2)
			if len(srv2.Requests()) != 1 || cnt2.get(r2.path(), apiretry.ResultError) != 1 {
				t.Errorf("a 422 was tried %d times (counted %v), want once, counted as an error", len(srv2.Requests()), cnt2.calls)
			}
		})
	}
}
