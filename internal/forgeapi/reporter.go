package forgeapi

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/apiretry"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/githubapi"
)

// maxDescription is the longest description a status gets.
const maxDescription = 140

// step is a deploy's step, as a status reports it.
type step int

const (
	stepStarted step = iota
	stepSucceeded
	stepFailed
	stepInterrupted
)

func (s step) String() string {
	switch s {
	case stepStarted:
		return "started"
	case stepSucceeded:
		return "succeeded"
	case stepFailed:
		return "failed"
	}
	return "interrupted"
}

// status is one status to set on a commit.
type status struct {
	step        step
	description string
	targetURL   string
}

// report is one call of the Reporter's methods, queued.
type report struct {
	commit string
	status status
	queued time.Time
}

// Option adjusts a Reporter; tests pass a clock and a backoff.
type Option func(*Reporter)

// WithClock makes the reporter read the time with now and wait with sleep.
func WithClock(now func() time.Time, sleep func(context.Context, time.Duration) error) Option {
	return func(r *Reporter) { r.retry.Now, r.retry.Sleep, r.now = now, sleep, now }
}

// WithBackoff sets the first wait of the exponential backoff and its bound.
func WithBackoff(base, maxBackoff time.Duration) Option {
	return func(r *Reporter) { r.retry.Base, r.retry.MaxBackoff = base, maxBackoff }
}

// ReporterConfig bounds a Reporter; zero values take the defaults.
type ReporterConfig struct {
	// QueueSize is how many reports may wait; when full, the oldest is
	// dropped. Default 256.
	QueueSize int
	// MaxAttempts is how many requests one report may take. Default 10.
	MaxAttempts int
	// MaxAge is how long after it was made a report is given up. Default 1h.
	MaxAge time.Duration
}

// Reporter reports deploys to the forge as commit statuses named
// "deploy/<environment>" (Bitbucket: build statuses keyed
// "deploy-<environment>"): pending (GitLab running, Bitbucket INPROGRESS)
// when a deploy starts, success once the commit is live, failure when it
// failed, error (GitLab canceled, Bitbucket STOPPED) when shutdown cut it
// short. Its methods never block and never fail: reports go into a bounded
// queue that one goroutine (Start) sends in order, retrying with backoff
// and honouring rate limits; Close stops it. It has the method set of
// githubapi.Reporter.
type Reporter struct {
	c     *Client
	q     *apiretry.Queue[report]
	retry apiretry.Retrier
	now   func() time.Time
}

// NewReporter returns a Reporter that reports through c, whose Config named
// the environment.
func (c *Client) NewReporter(cfg ReporterConfig, opts ...Option) (*Reporter, error) {
	if c.env == "" {
		return nil, errors.New(string(c.kind) + " statuses: environment is required")
	}
	r := &Reporter{c: c, now: time.Now,
		retry: apiretry.Retrier{MaxAttempts: cfg.MaxAttempts, MaxAge: cfg.MaxAge}}
	for _, o := range opts {
		o(r)
	}
	r.q = apiretry.NewQueue(cfg.QueueSize, r.send, r.drop, func(rep report, v any, stack []byte) {
		c.log.Error("panicked", zap.String("commit", rep.commit), zap.String("report", rep.status.step.String()),
			zap.Any("panic", v), zap.String("stack", string(stack)))
	})
	return r, nil
}

// Start starts the goroutine that sends the reports.
func (r *Reporter) Start() { r.q.Start() }

// Close stops taking reports, sends those queued until ctx ends, then stops
// the goroutine; what was not sent by then is dropped, and Close returns
// ctx's error.
func (r *Reporter) Close(ctx context.Context) error { return r.q.Close(ctx) }

// Started reports that a deploy of commit began.
func (r *Reporter) Started(commit, reason string) {
	desc := "deploying"
	if reason = strings.TrimSpace(reason); reason != "" {
		desc += ": " + reason
	}
	r.push(commit, status{step: stepStarted, description: desc})
}

// Succeeded reports that commit went live, linking siteURL (may be empty).
func (r *Reporter) Succeeded(commit, siteURL string) {
	r.push(commit, status{step: stepSucceeded, description: "deployed", targetURL: siteURL})
}

// Failed reports that the deploy of commit failed, with message on one line.
func (r *Reporter) Failed(commit, message string) {
	if strings.TrimSpace(message) == "" {
		message = "deploy failed"
	}
	r.push(commit, status{step: stepFailed, description: message})
}

// Interrupted reports that the deploy of commit was cut short by shutdown.
func (r *Reporter) Interrupted(commit string) {
	r.push(commit, status{step: stepInterrupted, description: "interrupted; deploys again on start"})
}

// RolledBack reports a rollback to commit, live again, linking siteURL.
func (r *Reporter) RolledBack(commit, siteURL string) {
	r.push(commit, status{step: stepSucceeded, description: "rolled back", targetURL: siteURL})
}

func (r *Reporter) push(commit string, st status) {
	st.description = githubapi.OneLine(st.description, maxDescription)
	r.q.Push(report{commit: commit, status: st, queued: r.now()})
}

// path is the endpoint that sets a status.
func (r *Reporter) path() string {
	switch r.c.kind {
	case GitLab:
		return PathGitLabCreateStatus
	case Bitbucket:
		return PathBitbucketCreateStatus
	}
	return PathGiteaCreateStatus
}

// drop counts and logs a report given up without a request.
func (r *Reporter) drop(rep report, why string) {
	r.c.onRequest(r.path(), apiretry.ResultDropped)
	r.c.log.Warn(string(r.c.kind)+" status report dropped",
		zap.String("commit", rep.commit), zap.String("report", rep.status.step.String()), zap.String("reason", why))
}

// send sets rep's status, retrying within its bounds.
func (r *Reporter) send(ctx context.Context, rep report) {
	path := r.path()
	log := r.c.log.With(zap.String("commit", rep.commit), zap.String("report", rep.status.step.String()),
		zap.String("endpoint", http.MethodPost+" "+path))
	_ = r.retry.Do(ctx, rep.queued, func(ctx context.Context) apiretry.Attempt {
		var resp *http.Response
		var err error
		switch r.c.kind {
		case GitLab:
			resp, err = r.c.gitlabSetStatus(ctx, rep.commit, rep.status)
		case Bitbucket:
			resp, err = r.c.bitbucketSetStatus(ctx, rep.commit, rep.status)
		default:
			resp, err = r.c.giteaSetStatus(ctx, rep.commit, rep.status)
		}
		return apiretry.Attempt{Resp: resp, Err: err}
	}, func(result string, attempt int, wait time.Duration, why string, err error) {
		r.c.onRequest(path, result)
		switch result {
		case apiretry.ResultRetry:
			log.Info(string(r.c.kind)+" api request failed; retrying", zap.Int("attempt", attempt), zap.Duration("wait", wait), zap.Error(err))
		case apiretry.ResultError:
			log.Error(string(r.c.kind)+" status report failed", zap.Error(err))
		case apiretry.ResultDropped:
			log.Warn(string(r.c.kind)+" status report dropped", zap.String("reason", why), zap.Int("attempts", attempt), zap.Error(err))
		}
	})
}
