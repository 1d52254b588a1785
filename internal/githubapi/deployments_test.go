package githubapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/githubtest"
)

const siteURL = "https://blog.example.com"

// statesOf lists a deployment's status states, oldest first.
func statesOf(d githubtest.Deployment) []string {
	var out []string
	for _, s := range d.Statuses {
		out = append(out, s.State)
	}
	return out
}

// TestReporterSequence checks what GitHub's repository page ends up showing
// for each kind of deploy: the deployments and their statuses, in order.
func TestReporterSequence(t *testing.T) {
	longFailure := "running hugo: exit status 1:\nError: error building site: " + strings.Repeat("template: partials/head.html:12: bad character ", 8)
	type dep struct {
		ref, description string
		states           []string
		lastDescription  string
		lastURL          string
	}
	tests := []struct {
		name  string
		drive func(r *Reporter)
		want  []dep
	}{
		{
			name:  "good deploy",
			drive: func(r *Reporter) { r.Started(shaA, "push"); r.Succeeded(shaA, siteURL) },
			want:  []dep{{shaA, "deploy: push", []string{"in_progress", "success"}, "deployed", siteURL}},
		},
		{
			name:  "failed build",
			drive: func(r *Reporter) { r.Started(shaA, "poll"); r.Failed(shaA, longFailure) },
			want:  []dep{{shaA, "deploy: poll", []string{"in_progress", "failure"}, OneLine(longFailure, 140), ""}},
		},
		{
			name:  "interrupted by shutdown",
			drive: func(r *Reporter) { r.Started(shaA, "push"); r.Interrupted(shaA) },
			want:  []dep{{shaA, "deploy: push", []string{"in_progress", "error"}, "interrupted; deploys again on start", ""}},
		},
		{
			name: "rollback",
			drive: func(r *Reporter) {
				r.Started(shaA, "push")
				r.Succeeded(shaA, siteURL)
				r.Started(shaB, "push")
				r.Succeeded(shaB, siteURL)
				r.RolledBack(shaA, siteURL)
			},
			want: []dep{
				{shaA, "deploy: push", []string{"in_progress", "success"}, "deployed", siteURL},
				{shaB, "deploy: push", []string{"in_progress", "success"}, "deployed", siteURL},
				{shaA, "rollback", []string{"success"}, "rolled back", siteURL},
			},
		},
		{
			name:  "success whose start was never reported",
			drive: func(r *Reporter) { r.Succeeded(shaC, siteURL) },
			want:  []dep{{shaC, "deploy", []string{"success"}, "deployed", siteURL}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := setup(t, githubtest.Options{Token: token}, "")
			r, clock := e.reporter(t, ReporterConfig{})
			r.Start()
			tt.drive(r)
			flush(t, r)

			got := e.srv.Deployments()
			if len(got) != len(tt.want) {
				t.Fatalf("GitHub shows %d deployments, want %d: %+v", len(got), len(tt.want), got)
			}
			for i, w := range tt.want {
				g := got[i]
				if g.Ref != w.ref || g.SHA != w.ref || g.Environment != "production" || g.Description != w.description {
					t.Errorf("deployment %d = ref %s env %q description %q, want ref %s env production description %q", i, g.Ref, g.Environment, g.Description, w.ref, w.description)
				}
				if g.AutoMerge || g.RequiredContexts == nil || len(g.RequiredContexts) != 0 {
					t.Errorf("deployment %d: auto_merge %v required_contexts %#v, want false and []", i, g.AutoMerge, g.RequiredContexts)
				}
				if !reflect.DeepEqual(statesOf(g), w.states) {
					t.Errorf("deployment %d statuses = %v, want %v", i, statesOf(g), w.states)
				}
				last := g.Statuses[len(g.Statuses)-1]
				if last.Description != w.lastDescription || last.EnvironmentURL != w.lastURL {
					t.Errorf("deployment %d last status: description %q environment_url %q, want %q and %q", i, last.Description, last.EnvironmentURL, w.lastDescription, w.lastURL)
				}
				if n := utf8.RuneCountInString(last.Description); n > 140 || strings.ContainsAny(last.Description, "\n\r") {
					t.Errorf("deployment %d: description of %d characters or several lines: %q", i, n, last.Description)
				}
			}
			for _, req := range e.srv.Requests() {
				if req.Operation == "repos/create-deployment" {
					if rc, ok := req.Body["required_contexts"].([]any); !ok || len(rc) != 0 {
						t.Errorf("create deployment sent required_contexts %#v, want []", req.Body["required_contexts"])
					}
				}
			}
			if e.counts.total(ResultOK) != len(e.srv.Requests()) || e.counts.total(ResultRetry)+e.counts.total(ResultDropped)+e.counts.total(ResultError) != 0 {
				t.Errorf("counts = %s, want every request ok", e.counts)
			}
			if w := clock.Waits(); len(w) != 0 {
				t.Errorf("waited %v with GitHub answering", w)
			}
		})
	}
}

// TestReporterRetries checks that failed requests are retried after the wait
// GitHub's headers ask for, or the backoff, and that the deploy is reported
// in the end.
func TestReporterRetries(t *testing.T) {
	start := newFakeClock().Now()
	tests := []struct {
		name      string
		faults    func(s *githubtest.Server)
		wantWaits []time.Duration
		retries   int
	}{
		{"server errors: backoff doubles", func(s *githubtest.Server) { s.FailNext(3, githubtest.ServerError) },
			[]time.Duration{time.Second, 2 * time.Second, 4 * time.Second}, 3},
		{"backoff is capped", func(s *githubtest.Server) { s.FailNext(5, githubtest.ServerError) },
			[]time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second}, 5},
		{"429 Retry-After", func(s *githubtest.Server) { s.FailNext(1, githubtest.TooManyRequests(7)) },
			[]time.Duration{7 * time.Second}, 1},
		{"403 primary rate limit until X-RateLimit-Reset", func(s *githubtest.Server) {
			s.FailNext(1, githubtest.RateLimited(start.Add(90*time.Second)))
		}, []time.Duration{91 * time.Second}, 1},
		{"500 with Retry-After", func(s *githubtest.Server) {
			s.FailNext(1, githubtest.Fault{Status: http.StatusServiceUnavailable, RetryAfter: "30"})
		}, []time.Duration{30 * time.Second}, 1},
		{"rate limit then server error", func(s *githubtest.Server) {
			s.FailNext(1, githubtest.RateLimited(start.Add(10*time.Second)))
			s.FailNext(1, githubtest.ServerError)
		}, []time.Duration{11 * time.Second, 2 * time.Second}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := setup(t, githubtest.Options{Token: token}, "")
			tt.faults(e.srv)
			r, clock := e.reporter(t, ReporterConfig{})
			r.Start()
			r.Started(shaA, "push")
			r.Succeeded(shaA, siteURL)
			flush(t, r)

			if got := clock.Waits(); !reflect.DeepEqual(got, tt.wantWaits) {
				t.Errorf("waits = %v, want %v", got, tt.wantWaits)
			}
			d := e.srv.Deployments()
			if len(d) != 1 || !reflect.DeepEqual(statesOf(d[0]), []string{"in_progress", "success"}) {
				t.Fatalf("GitHub shows %+v, want one deployment in_progress then success", d)
			}
			if e.counts.get(PathDeployments, ResultRetry) != tt.retries || e.counts.get(PathDeployments, ResultOK) != 1 ||
				e.counts.get(PathDeploymentStatuses, ResultOK) != 2 || e.counts.total(ResultDropped) != 0 {
				t.Errorf("counts = %s, want %d retries of the create, then all ok", e.counts, tt.retries)
			}
		})
	}
}

// TestReporterFinalError checks that a 403 that is not a rate limit (a token
// without Deployments: write) is not retried, is counted and logged, and
// that the next report still goes through.
func TestReporterFinalError(t *testing.T) {
	e := setup(t, githubtest.Options{Token: token}, "")
	e.srv.FailNext(1, githubtest.Fault{Status: http.StatusForbidden, Message: "Resource not accessible by personal access token"})
	r, clock := e.reporter(t, ReporterConfig{})
	r.Start()
	r.Started(shaA, "push")
	r.Succeeded(shaA, siteURL)
	flush(t, r)

	if len(clock.Waits()) != 0 {
		t.Errorf("waited %v before giving up on a 403", clock.Waits())
	}
	if e.counts.get(PathDeployments, ResultError) != 1 {
		t.Errorf("counts = %s, want one error on the create", e.counts)
	}
	logs := logText(e.logs)
	if !strings.Contains(logs, "POST /repos/{owner}/{repo}/deployments: 403 Forbidden: Resource not accessible by personal access token") {
		t.Errorf("logs do not name the endpoint and status:\n%s", logs)
	}
	if d := e.srv.Deployments(); len(d) != 1 || !reflect.DeepEqual(statesOf(d[0]), []string{"success"}) {
		t.Errorf("GitHub shows %+v, want the success reported on a deployment made for it", d)
	}
}

// TestReporterDrops checks the bounds: attempts, age, queue size and Close's
// deadline each drop reports, and each drop is counted.
func TestReporterDrops(t *testing.T) {
	t.Run("attempts", func(t *testing.T) {
		e := setup(t, githubtest.Options{Token: token}, "")
		e.srv.FailNext(100, githubtest.ServerError)
		r, clock := e.reporter(t, ReporterConfig{MaxAttempts: 3})
		r.Start()
		r.Started(shaA, "push")
		flush(t, r)
		if n := len(e.srv.Requests()); n != 3 {
			t.Errorf("%d requests, want 3 attempts", n)
		}
		if len(clock.Waits()) != 2 || e.counts.get(PathDeployments, ResultRetry) != 2 || e.counts.get(PathDeployments, ResultDropped) != 1 {
			t.Errorf("waits %v counts %s, want 2 retries and 1 dropped", clock.Waits(), e.counts)
		}
		if !strings.Contains(logText(e.logs), "github deployment report dropped") {
			t.Errorf("no log line says the report was dropped:\n%s", logText(e.logs))
		}
	})
	t.Run("age", func(t *testing.T) {
		e := setup(t, githubtest.Options{Token: token}, "")
		clockStart := newFakeClock().Now()
		e.srv.FailNext(1, githubtest.RateLimited(clockStart.Add(time.Hour)))
		r, clock := e.reporter(t, ReporterConfig{MaxAge: time.Minute})
		r.Start()
		r.Started(shaA, "push")
		r.Succeeded(shaB, siteURL)
		flush(t, r)
		// The first request learns the limit lasts past both reports' age:
		// both are dropped, the second without a request.
		if n := len(e.srv.Requests()); n != 1 {
			t.Errorf("%d requests, want 1", n)
		}
		if len(clock.Waits()) != 0 || e.counts.get(PathDeployments, ResultDropped) != 2 {
			t.Errorf("waits %v counts %s, want no wait and 2 dropped", clock.Waits(), e.counts)
		}
	})
	t.Run("queue full drops the oldest", func(t *testing.T) {
		e := setup(t, githubtest.Options{Token: token}, "")
		r, _ := e.reporter(t, ReporterConfig{QueueSize: 2})
		r.Started(shaA, "push") // not started yet: the queue fills
		r.Started(shaB, "push")
		r.Started(shaC, "push")
		if e.counts.get(PathDeployments, ResultDropped) != 1 {
			t.Errorf("counts = %s, want the oldest report dropped at once", e.counts)
		}
		r.Start()
		flush(t, r)
		var refs []string
		for _, d := range e.srv.Deployments() {
			refs = append(refs, d.Ref)
		}
		if !reflect.DeepEqual(refs, []string{shaB, shaC}) {
			t.Errorf("deployments of %v, want the two newest", refs)
		}
	})
	t.Run("close deadline", func(t *testing.T) {
		e := setup(t, githubtest.Options{Token: token}, "")
		e.srv.FailNext(100, githubtest.ServerError)
		r, _ := e.reporter(t, ReporterConfig{})
		sleeping := make(chan struct{}, 1)
		r.sleep = func(ctx context.Context, d time.Duration) error {
			sleeping <- struct{}{}
			<-ctx.Done()
			return ctx.Err()
		}
		r.Start()
		r.Started(shaA, "push")
		r.Succeeded(shaA, siteURL)
		select { // the first attempt failed; the reporter waits to retry
		case <-sleeping:
		case <-time.After(10 * time.Second):
			t.Fatalf("the reporter never waited to retry; counts %s", e.counts)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := r.Close(ctx)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Close = %v, want the context's error", err)
		}
		if e.counts.total(ResultDropped) != 2 {
			t.Errorf("counts = %s, want both reports dropped", e.counts)
		}
		r.Succeeded(shaB, siteURL) // after Close: dropped, not blocked
		if e.counts.total(ResultDropped) != 3 {
			t.Errorf("counts = %s, want the report after Close dropped", e.counts)
		}
	})
}

// TestReporterNeverBlocks checks that reports return at once while GitHub
// does not answer at all.
func TestReporterNeverBlocks(t *testing.T) {
	e := setup(t, githubtest.Options{Token: token}, "")
	r, _ := e.reporter(t, ReporterConfig{QueueSize: 4})
	block := make(chan struct{})
	r.sleep = func(ctx context.Context, d time.Duration) error {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return ctx.Err()
	}
	e.srv.FailNext(1, githubtest.ServerError)
	r.Start()
	for range 100 {
		r.Started(shaA, "push")
	}
	// 100 reports returned while the goroutine waits: at most 4 wait.
	if n := e.counts.get(PathDeployments, ResultDropped); n < 100-4-1 {
		t.Errorf("%d dropped, want at least 95 (queue of 4, one in flight)", n)
	}
	close(block)
}

func TestOneLine(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"short", "build failed", "build failed"},
		{"lines joined", "running hugo:\n  exit status 1\r\n\tError", "running hugo: exit status 1 Error"},
		{"control characters", "a\x1b[31mb\x00c", "a [31mb c"},
		{"invalid utf-8", "a\xffb", "a\uFFFDb"},
		{"cut at a word", strings.Repeat("word ", 40), strings.TrimSpace(strings.Repeat("word ", 27)) + "…"},
		{"cut inside a long word", strings.Repeat("x", 200), strings.Repeat("x", 139) + "…"},
		{"multibyte", strings.Repeat("é", 200), strings.Repeat("é", 139) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := OneLine(tt.in, 140)
			if got != tt.want {
				t.Errorf("OneLine = %q, want %q", got, tt.want)
			}
			if utf8.RuneCountInString(got) > 140 {
				t.Errorf("%d characters", utf8.RuneCountInString(got))
			}
		})
	}
}

// A panic while sending one report is recovered: it is logged with its
// stack, that report dropped, and the next report is sent. On main the
// panic ended the process.
func TestReporterRecoversFromPanic(t *testing.T) {
	e := setup(t, githubtest.Options{Token: token}, "")
	e.srv.FailNext(1, githubtest.ServerError)
	r, clock := e.reporter(t, ReporterConfig{})
	panicked := false
	r.sleep = func(ctx context.Context, d time.Duration) error {
		if !panicked {
			panicked = true
			panic("boom in the reporter")
		}
		return clock.Sleep(ctx, d)
	}
	r.Start()
	r.Started(shaA, "push") // fails once, then panics waiting to retry
	r.Started(shaB, "push")
	flush(t, r)
	var refs []string
	for _, d := range e.srv.Deployments() {
		refs = append(refs, d.Ref)
	}
	if !reflect.DeepEqual(refs, []string{shaB}) {
		t.Errorf("deployments of %v, want the report after the panic's", refs)
	}
	entries := e.logs.FilterMessage("panicked").All()
	if len(entries) != 1 || entries[0].ContextMap()["panic"] != "boom in the reporter" || !strings.Contains(fmt.Sprint(entries[0].ContextMap()["stack"]), "sendRecovering") {
		t.Errorf("panicked entries: %v", entries)
	}
}
