package caddywebhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/caddy-webhooks/caddy-github-webhook/delivery"
	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/githubapi"
)

// Previews builds a site for every open pull request against the deployed
// branch, at its own host.
type Previews struct {
	// The preview's host name, with {number} where the pull request's
	// number goes, such as pr-{number}.preview.example.com. Each preview
	// lives in <path>/previews/<host>/ and is served from its current:
	// serve the previews with a second site block, such as
	// *.preview.example.com with root * <path>/previews/{host}/current.
	// Its builds get DEPLOY_URL https://<host>/ and DEPLOY_PR <number>.
	// Required.
	Host string `json:"host,omitempty"`

	// How many previews may exist at once. A pull request beyond gets none,
	// and the answer to its delivery (and, with token, its commit status
	// on GitHub) says "limit". Default (unset or 0): 10.
	Max int `json:"max,omitempty"`

	// A preview that was not updated (opened, pushed to, built) for this
	// long is removed. Default (unset or 0): 14 days.
	TTL caddy.Duration `json:"ttl,omitempty"`

	// Pull requests from forks run code that nobody reviewed yet. Empty
	// (the default, "forks off"): they get no preview. A label's name
	// ("forks label <name>"): a fork's head is built only once someone
	// adds that label, and only the commit that was the head then; a
	// later push waits until the label is added again. Needs sandbox:
	// fork builds run with no env values, no token, and no cache written
	// back.
	ForksLabel string `json:"forks_label,omitempty"`
}

// reconcileEvery is how often, with token, previews of pull requests that
// are no longer open are removed (also once at start).
const reconcileEvery = time.Hour

// unmarshalPreviews reads the previews subdirective. Syntax:
//
//	previews <host template> {
//		max   <n>
//		ttl   <duration>
//		forks off|label <name>
//	}
func (h *Handler) unmarshalPreviews(d *caddyfile.Dispenser) error {
	p := &Previews{}
	if !d.NextArg() {
		return d.ArgErr()
	}
	p.Host = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		if seen[name] {
			return d.Errf("previews: %s may be given only once", name)
		}
		seen[name] = true
		switch name {
		case "max":
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				return d.Errf("previews: max %q is not a whole number of at least 1", s)
			}
			p.Max = n
		case "ttl":
			dur, err := durationArg(d, "previews ttl")
			if err != nil {
				return err
			}
			p.TTL = caddy.Duration(dur)
		case "forks":
			args := d.RemainingArgs()
			switch {
			case len(args) == 1 && args[0] == "off":
			case len(args) == 2 && args[0] == "label" && args[1] != "":
				p.ForksLabel = args[1]
			default:
				return d.Errf("previews: forks takes off, or label <name>")
			}
		default:
			return d.Errf("unrecognized previews subdirective %q", name)
		}
	}
	h.Previews = p
	return nil
}

// previewsConfig is the deployer's view of Previews; nil without it.
func (h *Handler) previewsConfig() *deployer.Previews {
	p := h.Previews
	if p == nil {
		return nil
	}
	dp := &deployer.Previews{Host: p.Host, Max: p.Max, TTL: time.Duration(p.TTL), ForksLabel: p.ForksLabel}
	if h.forgeKind() == forgeGitLab {
		dp.Refs = deployer.MergeRequestRefs
	}
	return dp
}

// siteURL is the site's address, DEPLOY_URL of its builds: the URL of
// deployments, if set; else none.
func (h *Handler) siteURL() string {
	if h.Deployments != nil {
		return h.Deployments.URL
	}
	return ""
}

// provisionPreviews makes, with a token, the reporter of previews to GitHub
// (transient environments with deployments, a commit status and one
// comment per pull request) and the reconcile against the open pull
// requests, both started with the configuration. It does no I/O.
func (h *Handler) provisionPreviews(ctx caddy.Context, token string) error {
	if h.Previews == nil || h.cfg.Previews == nil {
		return nil
	}
	a, err := ctx.App("github_webhook")
	if err != nil {
		return fmt.Errorf("loading the github_webhook app: %w", err)
	}
	app := a.(*App)
	if h.Previews.Host == "" {
		return errors.New("previews: a host template is required")
	}
	if h.forgeKind() != forgeGitHub {
		h.logger.Info("previews on " + h.forgeKind() + ": nothing is reported on the forge, and a preview whose closed delivery never came stays until its ttl")
		return nil
	}
	if token == "" && h.appTokens == nil {
		h.logger.Info("previews without token: nothing is reported on GitHub, and a preview whose closed delivery never came stays until its ttl")
		return nil
	}
	client, _ := h.github.(*githubapi.Client)
	if client == nil {
		owner, name, _ := strings.Cut(h.Repo, "/")
		c, err := githubapi.New(githubapi.Config{
			APIURL: h.APIURL, Token: token, App: h.appTokens, Owner: owner, Repo: name,
			Logger: h.logger.Named("github"), OnRequest: h.metrics.apiCounter(h.key),
		})
		if err != nil {
			return fmt.Errorf("previews: %w", err)
		}
		client = c
		h.previewClient = c
	}
	r := client.NewPreviewReporter(githubapi.PreviewConfig{Deployments: h.Deployments != nil})
	h.previewReporter = r
	h.cfg.Previews.Notify = func(e deployer.PreviewEvent) {
		p := githubapi.Preview{Number: e.Number, Head: e.Commit, URL: e.URL}
		switch e.Kind {
		case deployer.PreviewStarted:
			r.Building(p)
		case deployer.PreviewSucceeded:
			r.Live(p)
		case deployer.PreviewFailed:
			r.Failed(p, failureSummary(e.Err))
		case deployer.PreviewWaitingLabel:
			r.ForkNotApproved(p, h.Previews.ForksLabel)
		case deployer.PreviewRemoved:
			r.Removed(p, "the preview was removed")
		}
	}
	done := ctx.Done()
	app.onStart(func() {
		r.Start()
		go h.reconcile(ctx, client, done)
	})
	return nil
}

// reconcile removes, at start and every reconcileEvery, the previews of
// pull requests that are no longer open, until done.
func (h *Handler) reconcile(ctx context.Context, client *githubapi.Client, done <-chan struct{}) {
	defer func() {
		if v := recover(); v != nil {
			h.logger.Error("panicked", zap.String("work", "reconciling previews"), zap.Any("panic", v),
				zap.String("stack", string(debug.Stack())))
		}
	}()
	d := h.target.d
	tick := time.NewTicker(reconcileEvery)
	defer tick.Stop()
	for {
		branch := d.Branch()
		if branch == "" {
			branch = h.Branch
		}
		if branch != "" {
			rctx, cancel := context.WithTimeout(ctx, time.Minute)
			prs, err := client.OpenPullRequests(rctx, branch)
			cancel()
			if err != nil {
				h.logger.Warn("listing open pull requests for previews", zap.Error(err))
			} else {
				open := make([]int, 0, len(prs))
				for _, pr := range prs {
					open = append(open, pr.Number)
				}
				d.ReconcilePreviews(open)
			}
		}
		select {
		case <-done:
			return
		case <-tick.C:
		}
	}
}

// closePreviews stops the previews' reporter, after sending what it has
// queued (for at most reporterCloseTimeout).
func (h *Handler) closePreviews() {
	if h.previewReporter != nil {
		ctx, cancel := context.WithTimeout(context.Background(), reporterCloseTimeout)
		if err := h.previewReporter.Close(ctx); err != nil {
			h.logger.Warn("github preview reports dropped at unload", zap.Error(err))
		}
		cancel()
		h.previewReporter = nil
	}
	if h.previewClient != nil {
		h.previewClient.CloseIdleConnections()
		h.previewClient = nil
	}
}

// decidePullRequest answers a verified pull_request delivery: for the
// deployed repository and a pull request against the deployed branch,
// opened, reopened, synchronize and ready_for_review wake its preview (202),
// closed removes it (202), the label of forks approves a fork's head (202);
// the rest is skipped (200), as is everything without previews.
func (h *Handler) decidePullRequest(ev delivery.Event) answer {
	pr := ev.PullRequest
	if h.Previews == nil || h.pullRequest == nil {
		return skipped("event " + quote(ev.Name) + " not handled: previews are off")
	}
	if !strings.EqualFold(ev.Repository, h.Repo) {
		return skipped("pull request in repository " + quote(ev.Repository) + "; this endpoint deploys " + quote(h.Repo))
	}
	branch := h.branch()
	if branch == "" {
		branch = ev.DefaultBranch
	}
	if pr.Base != branch {
		return skipped("pull request against branch " + quote(pr.Base) + "; previews are of pull requests against " + quote(branch))
	}
	res := h.pullRequest(deployer.PullRequest{Number: pr.Number, Action: pr.Action, Head: pr.Head, Fork: pr.Fork, Label: pr.Label})
	if r := h.previewReporter; r != nil && !res.Queued {
		p := githubapi.Preview{Number: pr.Number, Head: pr.Head, URL: "https://" + previewHostOf(h.Previews.Host, pr.Number) + "/"}
		switch {
		case strings.HasPrefix(res.Reason, "limit"):
			limit := h.Previews.Max
			if limit <= 0 {
				limit = deployer.DefaultPreviewMax
			}
			r.OverLimit(p, limit)
		case pr.Fork && pr.Action != "closed" && pr.Action != "labeled" && (strings.HasPrefix(res.Reason, "fork") || strings.HasPrefix(res.Reason, "forks")):
			r.ForkNotApproved(p, h.Previews.ForksLabel)
		}
	}
	if !res.Queued {
		return skipped(res.Reason)
	}
	return answer{Result: resultQueued, Reason: res.Reason, Repo: h.Repo, Branch: pr.Base, status: http.StatusAccepted}
}

// previewHostOf is a preview's host, as the deployer names it.
func previewHostOf(template string, number int) string {
	return strings.ToLower(strings.ReplaceAll(template, "{number}", strconv.Itoa(number)))
}
