package githubapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/go-github/v74/github"
	"go.uber.org/zap"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/apiretry"
)

// maxDescription is the longest description GitHub takes on a deployment status.
const maxDescription = 140

// interruptedDescription is the error status of a deploy cut short by shutdown.
const interruptedDescription = "interrupted; deploys again on start"

// ReporterConfig bounds a Reporter; zero values take the defaults.
type ReporterConfig struct {
	// Environment is the GitHub environment deployments are made in,
	// e.g. "production". Required.
	Environment string
	// QueueSize is how many reports may wait; when full, the oldest is
	// dropped. Default 256.
	QueueSize int
	// MaxAttempts is how many requests one call may take. Default 10.
	MaxAttempts int
	// MaxAge is how long after it was made a report is given up. Default 1h.
	MaxAge time.Duration
}

type reportKind int

const (
	kindStarted reportKind = iota
	kindSucceeded
	kindFailed
	kindInterrupted
	kindRolledBack
)

// report is one call of the Reporter's methods, queued.
type report struct {
	kind   reportKind
	commit string
	text   string // reason, environment URL or failure message
	queued time.Time
}

// path is the endpoint a report calls first, for counting it when dropped.
func (r report) path() string {
	if r.kind == kindStarted || r.kind == kindRolledBack {
		return PathDeployments
	}
	return PathDeploymentStatuses
}

// maxIDs bounds the commits whose deployment ID the reporter remembers.
const maxIDs = 64

// Reporter reports deploys to GitHub as deployments and deployment statuses.
// Its methods never block and never fail: reports go into a bounded queue
// (apiretry.Queue) that one goroutine (Start) sends in order, retrying with
// backoff (apiretry.Retrier); the oldest report is dropped when the queue
// is full. Close stops it.
type Reporter struct {
	c           *Client
	env         string
	maxAttempts int
	maxAge      time.Duration
	// base and maxBackoff shape the exponential backoff; now and sleep are
	// the clock. Tests replace them before Start.
	base, maxBackoff time.Duration
	now              func() time.Time
	sleep            func(context.Context, time.Duration) error

	q *apiretry.Queue[report]

	// Owned by the queue's goroutine.
	retry   apiretry.Retrier
	ids     map[string]int64 // commit -> its latest deployment ID
	idOrder []string
}

// NewReporter returns a Reporter that reports through c.
func (c *Client) NewReporter(cfg ReporterConfig) (*Reporter, error) {
	if cfg.Environment == "" {
		return nil, errors.New("github deployments: environment is required")
	}
	r := &Reporter{
		c: c, env: cfg.Environment, maxAttempts: cfg.MaxAttempts, maxAge: cfg.MaxAge,
		base: 2 * time.Second, maxBackoff: 5 * time.Minute,
		now: time.Now, sleep: sleepCtx,
		ids: map[string]int64{},
	}
	r.q = apiretry.NewQueue(cfg.QueueSize, r.send, r.drop, func(rep report, v any, stack []byte) {
		c.log.Error("panicked", zap.String("commit", rep.commit), zap.String("report", rep.kind.String()),
			zap.Any("panic", v), zap.String("stack", string(stack)))
	})
	return r, nil
}

// Start starts the goroutine that sends the reports. Calls after the first,
// or after Close, do nothing.
func (r *Reporter) Start() {
	r.retry = apiretry.Retrier{MaxAttempts: r.maxAttempts, MaxAge: r.maxAge,
		Base: r.base, MaxBackoff: r.maxBackoff, Now: r.now, Sleep: r.sleep}
	r.q.Start()
}

// Close stops taking reports, sends those queued until ctx ends, then stops
// the goroutine and returns; what was not sent by then is dropped, and
// Close returns ctx's error.
func (r *Reporter) Close(ctx context.Context) error {
	if err := r.q.Close(ctx); err != nil {
		return fmt.Errorf("github deployments: %w", err)
	}
	return nil
}

// Started reports that a deploy of commit began: a new deployment for it
// (ref the full SHA, auto_merge false, required_contexts empty, a
// description naming reason), then the status in_progress.
func (r *Reporter) Started(commit, reason string) {
	r.enqueue(report{kind: kindStarted, commit: commit, text: reason})
}

// Succeeded reports that commit went live: status success with
// environmentURL (may be empty).
func (r *Reporter) Succeeded(commit, environmentURL string) {
	r.enqueue(report{kind: kindSucceeded, commit: commit, text: environmentURL})
}

// Failed reports that the deploy of commit failed: status failure whose
// description is message on one line, cut to 140 characters.
func (r *Reporter) Failed(commit, message string) {
	r.enqueue(report{kind: kindFailed, commit: commit, text: message})
}

// Interrupted reports that the deploy of commit was cut short by shutdown:
// status error, "interrupted; deploys again on start".
func (r *Reporter) Interrupted(commit string) {
	r.enqueue(report{kind: kindInterrupted, commit: commit})
}

// RolledBack reports a rollback to commit: a new deployment for it with
// status success and environmentURL (may be empty).
func (r *Reporter) RolledBack(commit, environmentURL string) {
	r.enqueue(report{kind: kindRolledBack, commit: commit, text: environmentURL})
}

func (r *Reporter) enqueue(rep report) {
	rep.queued = r.now()
	r.q.Push(rep)
}

// drop counts and logs a report given up without a request.
func (r *Reporter) drop(rep report, why string) {
	r.c.onRequest(rep.path(), ResultDropped)
	r.c.log.Warn("github deployment report dropped",
		zap.String("commit", rep.commit), zap.String("report", rep.kind.String()), zap.String("reason", why))
}

// send makes the requests of one report.
func (r *Reporter) send(ctx context.Context, rep report) {
	switch rep.kind {
	case kindStarted:
		desc := "deploy"
		if reason := strings.TrimSpace(rep.text); reason != "" {
			desc += ": " + reason
		}
		if id, err := r.create(ctx, rep, desc); err == nil {
			_ = r.status(ctx, rep, id, "in_progress", "deploying", "")
		}
	case kindSucceeded:
		if id, err := r.ensure(ctx, rep); err == nil {
			_ = r.status(ctx, rep, id, "success", "deployed", rep.text)
		}
	case kindFailed:
		msg := rep.text
		if strings.TrimSpace(msg) == "" {
			msg = "deploy failed"
		}
		if id, err := r.ensure(ctx, rep); err == nil {
			_ = r.status(ctx, rep, id, "failure", msg, "")
		}
	case kindInterrupted:
		if id, err := r.ensure(ctx, rep); err == nil {
			_ = r.status(ctx, rep, id, "error", interruptedDescription, "")
		}
	case kindRolledBack:
		if id, err := r.create(ctx, rep, "rollback"); err == nil {
			_ = r.status(ctx, rep, id, "success", "rolled back", rep.text)
		}
	}
}

// ensure returns the deployment of rep's commit, creating one when none is
// known (its Started report was dropped, or came before a restart).
func (r *Reporter) ensure(ctx context.Context, rep report) (int64, error) {
	if id, ok := r.ids[rep.commit]; ok {
		return id, nil
	}
	return r.create(ctx, rep, "deploy")
}

// create makes a deployment of rep's commit and remembers its ID.
func (r *Reporter) create(ctx context.Context, rep report, description string) (int64, error) {
	req := &github.DeploymentRequest{
		Ref:              github.Ptr(rep.commit),
		Environment:      github.Ptr(r.env),
		AutoMerge:        github.Ptr(false),
		RequiredContexts: &[]string{},
		Description:      github.Ptr(OneLine(description, maxDescription)),
	}
	var id int64
	err := r.do(ctx, rep, http.MethodPost, PathDeployments, func(ctx context.Context) (*github.Response, error) {
		d, resp, err := r.c.gh.Repositories.CreateDeployment(ctx, r.c.owner, r.c.repo, req)
		if err == nil {
			id = d.GetID()
		}
		return resp, err
	})
	if err != nil {
		return 0, err
	}
	if _, ok := r.ids[rep.commit]; !ok {
		r.idOrder = append(r.idOrder, rep.commit)
		if len(r.idOrder) > maxIDs {
			delete(r.ids, r.idOrder[0])
			r.idOrder = r.idOrder[1:]
		}
	}
	r.ids[rep.commit] = id
	return id, nil
}

// status adds a status to deployment id.
func (r *Reporter) status(ctx context.Context, rep report, id int64, state, description, environmentURL string) error {
	req := &github.DeploymentStatusRequest{
		State:       github.Ptr(state),
		Description: github.Ptr(OneLine(description, maxDescription)),
	}
	if environmentURL != "" {
		req.EnvironmentURL = github.Ptr(environmentURL)
	}
	return r.do(ctx, rep, http.MethodPost, PathDeploymentStatuses, func(ctx context.Context) (*github.Response, error) {
		_, resp, err := r.c.gh.Repositories.CreateDeploymentStatus(ctx, r.c.owner, r.c.repo, id, req)
		return resp, err
	})
}

// do runs one call, retrying it within the report's bounds.
func (r *Reporter) do(ctx context.Context, rep report, method, path string, fn func(context.Context) (*github.Response, error)) error {
	log := r.c.log.With(zap.String("commit", rep.commit), zap.String("report", rep.kind.String()),
		zap.String("endpoint", method+" "+path))
	return r.retry.Do(ctx, rep.queued, func(ctx context.Context) apiretry.Attempt {
		resp, err := r.c.call(ctx, method, path, fn)
		var ae *APIError
		return apiretry.Attempt{Resp: resp, Err: err, Limited: errors.As(err, &ae) && ae.limited}
	}, func(result string, attempt int, wait time.Duration, why string, err error) {
		r.c.onRequest(path, result)
		switch result {
		case ResultRetry:
			log.Info("github api request failed; retrying", zap.Int("attempt", attempt), zap.Duration("wait", wait), zap.Error(err))
		case ResultError:
			log.Error("github deployment report failed", zap.Error(err))
		case ResultDropped:
			log.Warn("github deployment report dropped", zap.String("reason", why), zap.Int("attempts", attempt), zap.Error(err))
		}
	})
}

func (k reportKind) String() string {
	switch k {
	case kindStarted:
		return "started"
	case kindSucceeded:
		return "succeeded"
	case kindFailed:
		return "failed"
	case kindInterrupted:
		return "interrupted"
	case kindRolledBack:
		return "rolled_back"
	}
	return "unknown"
}

// OneLine returns s on one line of at most limit characters: control
// characters and runs of white space become one space, invalid UTF-8 is
// replaced, and a longer text is cut at a word boundary when one is near,
// ending in "…".
func OneLine(s string, limit int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= limit {
		return s
	}
	runes := []rune(s)[:limit-1]
	cut := string(runes)
	if i := strings.LastIndexByte(cut, ' '); i > 0 && utf8.RuneCountInString(cut[:i]) >= (limit-1)*3/4 {
		cut = cut[:i]
	}
	return strings.TrimRight(cut, " ,;:.-") + "…"
}
