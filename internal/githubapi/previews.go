package githubapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/apiretry"
	"github.com/google/go-github/v74/github"
	"go.uber.org/zap"
)

// The endpoints of previews, as path templates (see PathDeployments).
const (
	PathPulls          = "/repos/{owner}/{repo}/pulls"
	PathIssueComments  = "/repos/{owner}/{repo}/issues/{issue_number}/comments"
	PathIssueComment   = "/repos/{owner}/{repo}/issues/comments/{comment_id}"
	PathCommitStatuses = "/repos/{owner}/{repo}/statuses/{sha}"
)

// PreviewContext is the context of the commit status a PreviewReporter
// sets on a pull request's head.
const PreviewContext = "preview"

// commentMarker starts the body of the preview comment: how the reporter
// finds its comment again after a restart.
const commentMarker = "<!-- caddy-github-webhook:preview -->"

// PreviewEnvironment is the GitHub environment of the preview of pull
// request number: "pr-<number>".
func PreviewEnvironment(number int) string { return "pr-" + strconv.Itoa(number) }

// PullRequest is an open pull request, as OpenPullRequests lists it.
type PullRequest struct {
	Number int
	// Head is the commit at its head (full SHA).
	Head string
	// HeadRepository is the full name (owner/name) of the repository its
	// head branch lives in; empty when that repository was deleted.
	HeadRepository string
	// Fork reports that the head is not in the base repository.
	Fork  bool
	Draft bool
}

// OpenPullRequests lists the repository's open pull requests whose base is
// the branch base, every page (at most 5,000 pull requests). It returns an
// error, never a partial list, so that a reconcile never removes the preview
// of a pull request it did not see; it makes no retry of its own (the
// reconcile runs again). It needs a token that may read pull requests.
func (c *Client) OpenPullRequests(ctx context.Context, base string) ([]PullRequest, error) {
	if base == "" {
		return nil, errors.New("listing open pull requests: no base branch")
	}
	self := c.owner + "/" + c.repo
	var out []PullRequest
	opts := &github.PullRequestListOptions{State: "open", Base: base, ListOptions: github.ListOptions{PerPage: c.perPage}}
	for page := 0; ; page++ {
		if page == maxPages {
			return nil, fmt.Errorf("listing open pull requests against %s: more than %d pages", base, maxPages)
		}
		var res []*github.PullRequest
		resp, err := c.get(ctx, PathPulls, func(ctx context.Context) (*github.Response, error) {
			var resp *github.Response
			var err error
			res, resp, err = c.gh.PullRequests.List(ctx, c.owner, c.repo, opts)
			return resp, err
		})
		if err != nil {
			return nil, fmt.Errorf("listing open pull requests against %s: %w", base, err)
		}
		for _, pr := range res {
			if pr.GetState() != "open" || pr.GetBase().GetRef() != base {
				continue
			}
			headRepo := pr.GetHead().GetRepo().GetFullName()
			out = append(out, PullRequest{
				Number: pr.GetNumber(), Head: pr.GetHead().GetSHA(), HeadRepository: headRepo,
				Fork: !strings.EqualFold(headRepo, self), Draft: pr.GetDraft(),
			})
		}
		if resp.NextPage == 0 {
			return out, nil
		}
		opts.Page = resp.NextPage
	}
}

// Preview names the preview a report is about.
type Preview struct {
	// Number is the pull request's number.
	Number int
	// Head is the commit the report is about (full SHA): built, live,
	// failed or refused.
	Head string
	// URL is the preview's address, such as
	// https://pr-7.preview.blog.example.com: the environment's link, the
	// commit status's target and the comment's link.
	URL string
}

// PreviewConfig configures a PreviewReporter; zero values take the defaults.
type PreviewConfig struct {
	// Deployments reports each preview as deployments in a transient,
	// non-production environment pr-<number> (the target's deployments
	// setting). Without it, only the commit status and the comment.
	Deployments bool
	// QueueSize, MaxAttempts and MaxAge bound reports as for a Reporter:
	// defaults 256, 10 and 1h.
	QueueSize   int
	MaxAttempts int
	MaxAge      time.Duration
}

type previewKind int

const (
	previewBuilding previewKind = iota
	previewLive
	previewFailed
	previewOverLimit
	previewForkNotApproved
	previewRemoved
)

func (k previewKind) String() string {
	return [...]string{"building", "live", "failed", "over_limit", "fork_not_approved", "removed"}[k]
}

// previewReport is one call of a PreviewReporter's methods, queued.
type previewReport struct {
	kind   previewKind
	p      Preview
	text   string // failure message, label, removal reason
	n      int    // max, for previewOverLimit
	queued time.Time
}

// path is an endpoint a report calls, for counting it when dropped.
func (r previewReport) path() string {
	if r.kind == previewRemoved {
		return PathIssueComments
	}
	return PathCommitStatuses
}

// prState is what the reporter knows of one pull request; it is owned by
// the goroutine and lost on restart (the comment is then found again).
type prState struct {
	deployment    int64          // the deployment of deployedHead, 0: none yet
	deployedHead  string         // the commit of deployment
	live          int64          // the deployment whose last status is success
	liveHead      string         // the commit live, "" when not known
	comment       int64          // our comment, 0: not known
	commentBody   string         // its body as last sent or read
	commentLooked bool           // the comments were listed since the reporter started
	notOurs       map[int64]bool // comments with the marker we may not edit
}

// maxPRs bounds the pull requests whose state the reporter keeps.
const maxPRs = 256

// PreviewReporter reports previews of pull requests to GitHub. Its methods
// never block and never fail: as for a Reporter, reports go into a bounded
// queue that one goroutine (Start) sends in order, retrying with backoff
// and honouring Retry-After and X-RateLimit-Reset; a report is dropped
// past its bounds, and counted. Close stops it. A production deploy never
// waits for it.
//
// What GitHub shows, for pull request n at head H:
//
//   - With PreviewConfig.Deployments, a deployment of H in the transient,
//     non-production environment pr-n for each build, with statuses
//     in_progress, then success (environment_url: the preview's URL) or
//     failure (a one-line description of at most 140 characters); a
//     deployment superseded by a newer live one, and every deployment of
//     pr-n once the preview is removed, get inactive.
//   - A commit status on H, context "preview" (PreviewContext), which says
//     what became of that commit on every pull request page, deployments or
//     not: pending while it builds, success with the preview's link,
//     failure when the build failed; and why there is no preview:
//     error "limit" past max, pending while a fork's commit waits for its
//     label, success (nothing expected) when forks are off. A later report
//     on the same commit replaces it.
//   - One comment on the pull request, created when the preview is first
//     live and then edited in place (the link, the commit, the last build's
//     result, and that the preview was removed), never a second one. Its
//     body starts with a hidden marker, by which the reporter finds it
//     again after a restart, reading every page of the pull request's
//     comments.
//
// The token needs Deployments, Commit statuses and Pull requests: read and
// write. An endpoint GitHub refuses for want of permission (403) is logged
// once and not called again by this reporter.
type PreviewReporter struct {
	c           *Client
	deployments bool
	q           *apiretry.Queue[previewReport]
	maxAttempts int
	maxAge      time.Duration
	// base and maxBackoff shape the exponential backoff; now and sleep are
	// the clock. Tests replace them.
	base, maxBackoff time.Duration
	now              func() time.Time
	sleep            func(context.Context, time.Duration) error

	// Owned by the queue's goroutine.
	ctx       context.Context // the queue's, for the report being sent
	prs       map[int]*prState
	prOrder   []int
	notBefore time.Time
	denied    map[string]bool // endpoints refused for want of permission
}

// NewPreviewReporter returns a PreviewReporter that reports through c. It
// does no I/O.
func (c *Client) NewPreviewReporter(cfg PreviewConfig) *PreviewReporter {
	r := &PreviewReporter{
		c: c, deployments: cfg.Deployments,
		maxAttempts: cfg.MaxAttempts, maxAge: cfg.MaxAge,
		base: 2 * time.Second, maxBackoff: 5 * time.Minute,
		now: time.Now, sleep: sleepCtx,
		prs: map[int]*prState{}, denied: map[string]bool{},
	}
	r.q = apiretry.NewQueue(cfg.QueueSize, func(ctx context.Context, rep previewReport) {
		r.ctx = ctx
		r.send(rep)
	}, r.drop, func(rep previewReport, v any, stack []byte) {
		r.c.log.Error("panicked", zap.Int("pull_request", rep.p.Number), zap.String("report", rep.kind.String()),
			zap.Any("panic", v), zap.String("stack", string(stack)))
	})
	if r.maxAttempts <= 0 {
		r.maxAttempts = 10
	}
	if r.maxAge <= 0 {
		r.maxAge = time.Hour
	}
	return r
}

// Building reports that a build of p.Head began: a deployment in pr-n with
// status in_progress, and the commit status pending.
func (r *PreviewReporter) Building(p Preview) { r.enqueue(previewReport{kind: previewBuilding, p: p}) }

// Live reports that the preview serves p.Head at p.URL: call it once the
// preview answers with the new commit. Deployment status success, commit
// status success with the link, and the comment created (the first time)
// or edited.
func (r *PreviewReporter) Live(p Preview) { r.enqueue(previewReport{kind: previewLive, p: p}) }

// Failed reports that the build of p.Head failed: deployment status and
// commit status failure with message on one line (at most 140 characters;
// it is shown to everyone who can read the pull request, so it must not
// hold the build's output), and the comment, if there is one, says so.
func (r *PreviewReporter) Failed(p Preview, message string) {
	r.enqueue(previewReport{kind: previewFailed, p: p, text: message})
}

// OverLimit reports that pull request p.Number gets no preview because max
// previews exist: commit status error on p.Head, "limit".
func (r *PreviewReporter) OverLimit(p Preview, max int) {
	r.enqueue(previewReport{kind: previewOverLimit, p: p, n: max})
}

// ForkNotApproved reports that the fork's commit p.Head is not built: with
// label, commit status pending until someone adds that label; with label
// empty (forks off), commit status success saying that forks get no preview.
func (r *PreviewReporter) ForkNotApproved(p Preview, label string) {
	r.enqueue(previewReport{kind: previewForkNotApproved, p: p, text: label})
}

// Removed reports that the preview of pull request p.Number was removed
// (p.Head and p.URL may be empty); reason says why, in a few words ("the
// pull request was closed"). Every deployment of pr-n not yet inactive gets
// inactive, and the comment, if there is one, says the preview is gone.
func (r *PreviewReporter) Removed(p Preview, reason string) {
	r.enqueue(previewReport{kind: previewRemoved, p: p, text: reason})
}

// Start starts the goroutine that sends the reports. Calls after the first,
// or after Close, do nothing.
func (r *PreviewReporter) Start() { r.q.Start() }

// Close stops taking reports, sends those queued until ctx ends, then stops
// the goroutine and returns; what was not sent by then is dropped, and Close
// returns ctx's error.
func (r *PreviewReporter) Close(ctx context.Context) error {
	if err := r.q.Close(ctx); err != nil {
		return fmt.Errorf("github preview reports: %w", err)
	}
	return nil
}

func (r *PreviewReporter) enqueue(rep previewReport) {
	rep.queued = r.now()
	r.q.Push(rep)
}

func (r *PreviewReporter) drop(rep previewReport, why string) {
	r.c.onRequest(rep.path(), ResultDropped)
	r.c.log.Warn("github preview report dropped", zap.Int("pull_request", rep.p.Number),
		zap.String("report", rep.kind.String()), zap.String("reason", why))
}

// state returns what is known of pull request number, making it known.
func (r *PreviewReporter) state(number int) *prState {
	if st, ok := r.prs[number]; ok {
		return st
	}
	if len(r.prOrder) >= maxPRs {
		delete(r.prs, r.prOrder[0])
		r.prOrder = r.prOrder[1:]
	}
	st := &prState{notOurs: map[int64]bool{}}
	r.prs[number] = st
	r.prOrder = append(r.prOrder, number)
	return st
}

func (r *PreviewReporter) forget(number int) {
	delete(r.prs, number)
	for i, n := range r.prOrder {
		if n == number {
			r.prOrder = append(r.prOrder[:i:i], r.prOrder[i+1:]...)
			break
		}
	}
}

// send makes the requests of one report.
func (r *PreviewReporter) send(rep previewReport) {
	st := r.state(rep.p.Number)
	short := shortSHA(rep.p.Head)
	switch rep.kind {
	case previewBuilding:
		if r.deployments {
			if id, err := r.createDeployment(rep, st); err == nil {
				_ = r.deploymentStatus(rep, id, "in_progress", "building the preview of "+short, "")
			}
		}
		_ = r.commitStatus(rep, "pending", "building the preview of "+short, "")
	case previewLive:
		if r.deployments {
			if id, err := r.ensureDeployment(rep, st); err == nil {
				if r.deploymentStatus(rep, id, "success", "preview of "+short+" live", rep.p.URL) == nil {
					if st.live != 0 && st.live != id {
						_ = r.deploymentStatus(rep, st.live, "inactive", "superseded by "+short, "")
					}
					st.live = id
				}
			}
		}
		st.liveHead = rep.p.Head
		_ = r.commitStatus(rep, "success", "preview of "+short+" live", rep.p.URL)
		r.upsertComment(rep, st, r.commentBody(rep, st), true)
	case previewFailed:
		msg := rep.text
		if strings.TrimSpace(msg) == "" {
			msg = "preview build failed"
		}
		if r.deployments {
			if id, err := r.ensureDeployment(rep, st); err == nil {
				_ = r.deploymentStatus(rep, id, "failure", msg, "")
			}
		}
		_ = r.commitStatus(rep, "failure", msg, "")
		r.upsertComment(rep, st, r.commentBody(rep, st), false)
	case previewOverLimit:
		_ = r.commitStatus(rep, "error", fmt.Sprintf("limit: no preview, this site keeps at most %d previews", rep.n), "")
	case previewForkNotApproved:
		if rep.text == "" {
			_ = r.commitStatus(rep, "success", "no preview: pull requests from forks are not previewed", "")
		} else {
			_ = r.commitStatus(rep, "pending", fmt.Sprintf("fork not approved: no preview until someone adds the label %q to this commit", rep.text), "")
		}
	case previewRemoved:
		if r.deployments {
			r.deactivateAll(rep)
		}
		st.liveHead, st.live = "", 0
		r.upsertComment(rep, st, r.commentBody(rep, st), false)
		r.forget(rep.p.Number)
	}
}

// shortSHA is the first ten characters of a commit's name.
func shortSHA(sha string) string {
	if len(sha) > 10 {
		return sha[:10]
	}
	return sha
}

// createDeployment makes a deployment of rep's head in pr-n.
func (r *PreviewReporter) createDeployment(rep previewReport, st *prState) (int64, error) {
	req := &github.DeploymentRequest{
		Ref:                   github.Ptr(rep.p.Head),
		Environment:           github.Ptr(PreviewEnvironment(rep.p.Number)),
		AutoMerge:             github.Ptr(false),
		RequiredContexts:      &[]string{},
		TransientEnvironment:  github.Ptr(true),
		ProductionEnvironment: github.Ptr(false),
		Description:           github.Ptr(OneLine(fmt.Sprintf("preview of #%d", rep.p.Number), maxDescription)),
	}
	var id int64
	err := r.do(rep, http.MethodPost, PathDeployments, func(ctx context.Context) (*github.Response, error) {
		d, resp, err := r.c.gh.Repositories.CreateDeployment(ctx, r.c.owner, r.c.repo, req)
		if err == nil {
			id = d.GetID()
		}
		return resp, err
	})
	if err != nil {
		return 0, err
	}
	st.deployment, st.deployedHead = id, rep.p.Head
	return id, nil
}

// ensureDeployment returns the deployment of rep's head, creating one when
// none is known (its Building report was dropped, or came before a restart).
func (r *PreviewReporter) ensureDeployment(rep previewReport, st *prState) (int64, error) {
	if st.deployment != 0 && st.deployedHead == rep.p.Head {
		return st.deployment, nil
	}
	return r.createDeployment(rep, st)
}

func (r *PreviewReporter) deploymentStatus(rep previewReport, id int64, state, description, environmentURL string) error {
	req := &github.DeploymentStatusRequest{
		State:       github.Ptr(state),
		Description: github.Ptr(OneLine(description, maxDescription)),
	}
	if environmentURL != "" {
		req.EnvironmentURL = github.Ptr(environmentURL)
	}
	return r.do(rep, http.MethodPost, PathDeploymentStatuses, func(ctx context.Context) (*github.Response, error) {
		_, resp, err := r.c.gh.Repositories.CreateDeploymentStatus(ctx, r.c.owner, r.c.repo, id, req)
		return resp, err
	})
}

// deactivateAll gives every deployment of pr-n whose latest status is not
// inactive the status inactive (the newest 100: GitHub lists newest first).
func (r *PreviewReporter) deactivateAll(rep previewReport) {
	var deps []*github.Deployment
	opts := &github.DeploymentsListOptions{Environment: PreviewEnvironment(rep.p.Number), ListOptions: github.ListOptions{PerPage: r.c.perPage}}
	err := r.do(rep, http.MethodGet, PathDeployments, func(ctx context.Context) (*github.Response, error) {
		var resp *github.Response
		var err error
		deps, resp, err = r.c.gh.Repositories.ListDeployments(ctx, r.c.owner, r.c.repo, opts)
		return resp, err
	})
	if err != nil {
		return
	}
	for _, d := range deps {
		var latest []*github.DeploymentStatus
		err := r.do(rep, http.MethodGet, PathDeploymentStatuses, func(ctx context.Context) (*github.Response, error) {
			var resp *github.Response
			var err error
			latest, resp, err = r.c.gh.Repositories.ListDeploymentStatuses(ctx, r.c.owner, r.c.repo, d.GetID(), &github.ListOptions{PerPage: 1})
			return resp, err
		})
		if err != nil || (len(latest) > 0 && latest[0].GetState() == "inactive") {
			continue
		}
		_ = r.deploymentStatus(rep, d.GetID(), "inactive", "preview removed", "")
	}
}

// commitStatus sets the preview's commit status on rep's head.
func (r *PreviewReporter) commitStatus(rep previewReport, state, description, targetURL string) error {
	if rep.p.Head == "" {
		return nil
	}
	req := &github.RepoStatus{
		State:       github.Ptr(state),
		Context:     github.Ptr(PreviewContext),
		Description: github.Ptr(OneLine(description, maxDescription)),
	}
	if targetURL != "" {
		req.TargetURL = github.Ptr(targetURL)
	}
	return r.do(rep, http.MethodPost, PathCommitStatuses, func(ctx context.Context) (*github.Response, error) {
		_, resp, err := r.c.gh.Repositories.CreateStatus(ctx, r.c.owner, r.c.repo, rep.p.Head, req)
		return resp, err
	})
}

// commentBody writes the comment for rep, after st was updated by it.
func (r *PreviewReporter) commentBody(rep previewReport, st *prState) string {
	var b strings.Builder
	b.WriteString(commentMarker + "\n")
	b.WriteString("### Preview\n\n")
	switch rep.kind {
	case previewRemoved:
		reason := OneLine(rep.text, maxDescription)
		if reason == "" {
			reason = "removed"
		}
		fmt.Fprintf(&b, "The preview was removed: %s.\n", markdownText(reason))
		return b.String()
	case previewFailed:
		msg := OneLine(rep.text, maxDescription)
		if msg == "" {
			msg = "preview build failed"
		}
		if st.liveHead != "" && st.liveHead != rep.p.Head {
			fmt.Fprintf(&b, "%s serves commit `%s`.\n\n", rep.p.URL, shortSHA(st.liveHead))
		} else if rep.p.URL != "" {
			fmt.Fprintf(&b, "%s\n\n", rep.p.URL)
		}
		fmt.Fprintf(&b, "The build of commit `%s` failed: %s.\n", shortSHA(rep.p.Head), markdownText(msg))
		return b.String()
	}
	fmt.Fprintf(&b, "%s serves commit `%s`: built and live.\n", rep.p.URL, shortSHA(rep.p.Head))
	return b.String()
}

// markdownText keeps s from being read as markup in a comment.
func markdownText(s string) string {
	return strings.NewReplacer("<", "&lt;", ">", "&gt;", "`", "'", "[", "\\[", "]", "\\]", "*", "\\*", "_", "\\_").Replace(s)
}

// upsertComment makes the pull request's one comment say body: it edits
// the comment found (in memory, else by listing every page of the pull
// request's comments for the marker), or creates one when create is set.
// A create that may have reached GitHub without an answer is never
// repeated blindly: the comments are listed again first.
func (r *PreviewReporter) upsertComment(rep previewReport, st *prState, body string, create bool) {
	for attempt := 1; attempt <= r.maxAttempts; attempt++ {
		if st.comment == 0 && !st.commentLooked {
			if err := r.findComment(rep, st); err != nil {
				return
			}
		}
		if st.comment != 0 {
			if st.commentBody == body {
				return
			}
			id := st.comment
			resp, err := r.doOnce(rep, http.MethodPatch, PathIssueComment, true, func(ctx context.Context) (*github.Response, error) {
				_, resp, err := r.c.gh.Issues.EditComment(ctx, r.c.owner, r.c.repo, id, &github.IssueComment{Body: github.Ptr(body)})
				return resp, err
			})
			if err == nil {
				st.commentBody = body
				return
			}
			if resp != nil && (resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusForbidden) {
				// Deleted by someone, or not ours to edit: make our own.
				st.notOurs[id] = true
				st.comment, st.commentBody = 0, ""
				continue
			}
			return
		}
		if !create {
			return
		}
		var made *github.IssueComment
		resp, err := r.doOnce(rep, http.MethodPost, PathIssueComments, false, func(ctx context.Context) (*github.Response, error) {
			var resp *github.Response
			var err error
			made, resp, err = r.c.gh.Issues.CreateComment(ctx, r.c.owner, r.c.repo, rep.p.Number, &github.IssueComment{Body: github.Ptr(body)})
			return resp, err
		})
		if err == nil {
			st.comment, st.commentBody, st.commentLooked = made.GetID(), body, true
			return
		}
		now := r.now()
		wait, retry, _ := retryDelay(resp, err, attempt, now, r.base, r.maxBackoff)
		if !retry {
			return
		}
		if attempt == r.maxAttempts || now.Add(wait).After(rep.queued.Add(r.maxAge)) || r.sleep(r.ctx, wait) != nil {
			break
		}
		// The comment may exist although no answer said so.
		st.commentLooked = false
	}
	r.c.onRequest(PathIssueComments, ResultDropped)
	r.c.log.Warn("github preview report dropped", zap.Int("pull_request", rep.p.Number),
		zap.String("report", rep.kind.String()), zap.String("reason", "the comment could not be written"))
}

// findComment lists the pull request's comments, every page, for the
// oldest one whose body starts with the marker and that is not known to be
// someone else's.
func (r *PreviewReporter) findComment(rep previewReport, st *prState) error {
	opts := &github.IssueListCommentsOptions{ListOptions: github.ListOptions{PerPage: r.c.perPage}}
	for page := 0; page < maxPages; page++ {
		var list []*github.IssueComment
		var resp *github.Response
		err := r.do(rep, http.MethodGet, PathIssueComments, func(ctx context.Context) (*github.Response, error) {
			var err error
			list, resp, err = r.c.gh.Issues.ListComments(ctx, r.c.owner, r.c.repo, rep.p.Number, opts)
			return resp, err
		})
		if err != nil {
			return err
		}
		for _, c := range list {
			if strings.HasPrefix(strings.TrimSpace(c.GetBody()), commentMarker) && !st.notOurs[c.GetID()] {
				st.comment, st.commentBody, st.commentLooked = c.GetID(), c.GetBody(), true
				return nil
			}
		}
		if resp.NextPage == 0 {
			st.commentLooked = true
			return nil
		}
		opts.Page = resp.NextPage
	}
	return fmt.Errorf("more than %d pages of comments", maxPages)
}

// do runs one call, retrying it within the report's bounds.
func (r *PreviewReporter) do(rep previewReport, method, path string, fn func(context.Context) (*github.Response, error)) error {
	_, err := r.doOnce(rep, method, path, true, fn)
	return err
}

// errDenied ends a call to an endpoint the token may not call.
var errDenied = errors.New("endpoint refused for want of permission")

// doOnce runs one call; with retry, it retries it within the report's
// bounds as Reporter does, else it returns after the first attempt with
// the answer, for the caller to decide. It waits first for a rate limit
// that an earlier answer announced.
func (r *PreviewReporter) doOnce(rep previewReport, method, path string, retry bool, fn func(context.Context) (*github.Response, error)) (*http.Response, error) {
	deadline := rep.queued.Add(r.maxAge)
	log := r.c.log.With(zap.Int("pull_request", rep.p.Number), zap.String("report", rep.kind.String()),
		zap.String("endpoint", method+" "+path))
	if r.denied[method+" "+path] {
		r.c.onRequest(path, ResultDropped)
		return nil, errDenied
	}
	for attempt := 1; ; attempt++ {
		if wait := r.notBefore.Sub(r.now()); wait > 0 {
			if r.notBefore.After(deadline) {
				r.c.onRequest(path, ResultDropped)
				log.Warn("github preview report dropped", zap.String("reason", "rate limited past the report's age bound"),
					zap.Time("rate_limited_until", r.notBefore))
				return nil, errDropped
			}
			if err := r.sleep(r.ctx, wait); err != nil {
				r.c.onRequest(path, ResultDropped)
				log.Warn("github preview report dropped", zap.String("reason", "reporter closed"))
				return nil, err
			}
		}
		resp, err := r.c.call(r.ctx, method, path, fn)
		if err == nil {
			r.c.onRequest(path, ResultOK)
			return resp, nil
		}
		if r.ctx.Err() != nil {
			r.c.onRequest(path, ResultDropped)
			log.Warn("github preview report dropped", zap.String("reason", "reporter closed"), zap.Error(err))
			return resp, err
		}
		now := r.now()
		wait, again, fromHeaders := retryDelay(resp, err, attempt, now, r.base, r.maxBackoff)
		if fromHeaders {
			r.notBefore = now.Add(wait)
		}
		// A 403 on editing a comment says it is someone else's, not that
		// the token may edit none: upsertComment makes our own.
		var ae *APIError
		if errors.As(err, &ae) && ae.Forbidden() && method != http.MethodPatch {
			r.denied[method+" "+path] = true
			r.c.onRequest(path, ResultError)
			log.Error("github refused a preview report for want of permission; not calling this endpoint again until reload",
				zap.String("permission", permissionOf(path)), zap.Error(err))
			return resp, err
		}
		if !again {
			r.c.onRequest(path, ResultError)
			log.Error("github preview report failed", zap.Error(err))
			return resp, err
		}
		if !retry {
			r.c.onRequest(path, ResultRetry)
			log.Info("github api request failed; looking again before retrying", zap.Int("attempt", attempt),
				zap.Duration("wait", wait), zap.Error(err))
			return resp, err
		}
		next := now.Add(wait)
		if attempt >= r.maxAttempts || next.After(deadline) {
			r.c.onRequest(path, ResultDropped)
			log.Warn("github preview report dropped", zap.Int("attempts", attempt), zap.Error(err))
			return resp, errDropped
		}
		r.c.onRequest(path, ResultRetry)
		log.Info("github api request failed; retrying", zap.Int("attempt", attempt),
			zap.Duration("wait", wait), zap.Error(err))
		if err := r.sleep(r.ctx, wait); err != nil {
			r.c.onRequest(path, ResultDropped)
			log.Warn("github preview report dropped", zap.String("reason", "reporter closed"))
			return resp, err
		}
	}
}

// permissionOf names the permission of a fine-grained token that path needs.
func permissionOf(path string) string {
	switch path {
	case PathCommitStatuses:
		return "Commit statuses: read and write"
	case PathIssueComments, PathIssueComment, PathPulls:
		return "Pull requests: read and write"
	}
	return "Deployments: read and write"
}
