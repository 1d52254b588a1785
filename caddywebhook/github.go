package caddywebhook

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/githubapi"
)

// Deployments is where deploys are reported on GitHub.
type Deployments struct {
	// The GitHub environment deployments are made in, such as
	// "production". Required.
	Environment string `json:"environment,omitempty"`

	// The site's address, shown on GitHub as the environment's link once
	// a deploy went live. Default: none.
	URL string `json:"url,omitempty"`
}

// RequireChecks names the checks a tip must pass before it is deployed.
type RequireChecks struct {
	// The checks that must have succeeded, each a name and, optionally,
	// the source it must come from, as branch protection pins a required
	// check to an app:
	//
	//   - "CI": a check run, a workflow or a commit status context named
	//     CI, whoever reported it;
	//   - "CI@app/github-actions": a check run named CI created by the
	//     GitHub App of that slug (github.com/apps/<slug>; GitHub Actions'
	//     jobs are "github-actions"); a check run or status of the same
	//     name from anyone else does not count;
	//   - "CI@.github/workflows/ci.yml": the GitHub Actions workflow named
	//     CI, run from that workflow file.
	//
	// Anyone who may write commit statuses or has an app with the Checks
	// permission on the repository can report a check of any name: pin the
	// source of what guards the site. Default (none): every check of the
	// commit, and every check suite GitHub created when it was pushed (one
	// per app that runs checks, GitHub Actions included), must have
	// succeeded, and at least one check must exist; a suite with no run yet
	// is pending, so a quick status (a CLA bot's) does not let a commit
	// through before its CI started. An installed app that never reports
	// keeps its suite queued: name the checks then.
	Names []string `json:"names,omitempty"`
}

// reporterCloseTimeout bounds how long unloading a configuration waits for
// its queued deployment reports to reach GitHub, such as the error status
// of a deploy that Caddy's stopping cut short.
const reporterCloseTimeout = 5 * time.Second

// validateGitHub checks deployments, require_checks, api_url and app.
func (h *Handler) validateGitHub() error {
	if err := h.validateApp(); err != nil {
		return err
	}
	if d := h.Deployments; d != nil {
		if strings.TrimSpace(d.Environment) == "" {
			return errors.New("deployments: environment is required")
		}
		if len(d.Environment) > 255 || strings.ContainsAny(d.Environment, "\x00\r\n") {
			return fmt.Errorf("deployments: environment %q is not a valid environment name", d.Environment)
		}
		if d.URL != "" {
			u, err := url.Parse(d.URL)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
				return fmt.Errorf("deployments: url %q is not an http or https URL", d.URL)
			}
		}
		if h.Token == "" && h.forgeKind() != forgeGitHub {
			return fmt.Errorf("deployments needs token: %s takes commit statuses only from a token that may write them", h.forgeKind())
		}
		if h.Token == "" && h.App == nil {
			return errors.New("deployments needs token (or app): GitHub takes deployments only from a token with the Deployments permission")
		}
	}
	if c := h.RequireChecks; c != nil {
		for i, name := range c.Names {
			if strings.TrimSpace(name) == "" {
				return fmt.Errorf("require_checks: name %d is empty", i+1)
			}
			if _, err := githubapi.ParseRequirement(name); err != nil {
				return fmt.Errorf("require_checks: %w", err)
			}
			if slices.Contains(c.Names[:i], name) {
				return fmt.Errorf("require_checks: %q is named twice", name)
			}
		}
	}
	if h.APIURL != "" {
		u, err := url.Parse(h.APIURL)
		switch {
		case err != nil || u.Host == "":
			return fmt.Errorf("api_url %q is not a URL", h.APIURL)
		case u.User != nil:
			return errors.New("api_url must not carry credentials; use token")
		case u.Scheme != "https" && u.Scheme != "http":
			return fmt.Errorf("api_url %q: want https", h.APIURL)
		case u.RawQuery != "" || u.Fragment != "":
			return fmt.Errorf("api_url %q must not have a query or fragment", h.APIURL)
		case u.Scheme == "http" && (h.Token != "" || h.App != nil) && !isLoopback(u.Hostname()):
			// The token would cross the network in clear.
			return fmt.Errorf("api_url %q: token needs an https api_url", h.APIURL)
		}
	}
	return nil
}

// isLoopback reports whether host names this machine.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// provisionGitHub makes the GitHub API client of the handler, its
// deployment reporter (started with the configuration, by the
// github_webhook app) and its checks gate, when deployments or
// require_checks ask for them. It does no I/O.
func (h *Handler) provisionGitHub(token string, obs *observer) error {
	if h.forgeKind() != forgeGitHub {
		return h.provisionForge(token, obs)
	}
	if h.Deployments == nil && h.RequireChecks == nil {
		if h.APIURL != "" {
			h.logger.Warn("api_url is set but neither deployments nor require_checks is: GitHub's API is not called")
		}
		return nil
	}
	owner, name, _ := strings.Cut(h.Repo, "/")
	client, err := githubapi.New(githubapi.Config{
		APIURL:    h.APIURL,
		Token:     token,
		App:       h.appTokens,
		Owner:     owner,
		Repo:      name,
		Logger:    h.logger.Named("github"),
		OnRequest: h.metrics.apiCounter(h.key),
	})
	if err != nil {
		return err
	}
	h.github = client
	if d := h.Deployments; d != nil {
		r, err := client.NewReporter(githubapi.ReporterConfig{Environment: d.Environment})
		if err != nil {
			return err
		}
		h.reporter = r
		obs.reporter = r
		obs.siteURL = d.URL
	}
	if c := h.RequireChecks; c != nil {
		names := slices.Clone(c.Names)
		h.cfg.Gate = func(ctx context.Context, commit string) (deployer.GateResult, error) {
			return checksGate(ctx, client.Checks, commit, names)
		}
	}
	return nil
}

// checksGate asks the forge, through checks (a client's Checks), whether
// commit's checks passed.
func checksGate(ctx context.Context, checks func(context.Context, string, []string) (githubapi.Verdict, error), commit string, names []string) (deployer.GateResult, error) {
	v, err := checks(ctx, commit, names)
	if err != nil {
		return deployer.GateResult{}, err
	}
	res := deployer.GateResult{Detail: v.String()}
	switch v.State {
	case githubapi.Passed:
		res.Verdict = deployer.GatePass
	case githubapi.Failed:
		res.Verdict = deployer.GateFail
	default:
		res.Verdict = deployer.GateWait
	}
	return res, nil
}

// closeGitHub stops the reporter, after sending what it has queued (for at
// most reporterCloseTimeout), and the client's idle connections.
func (h *Handler) closeGitHub() {
	if h.reporter != nil {
		ctx, cancel := context.WithTimeout(context.Background(), reporterCloseTimeout)
		if err := h.reporter.Close(ctx); err != nil {
			h.logger.Warn("github deployment reports dropped at unload", zap.Error(err))
		}
		cancel()
		h.reporter = nil
	}
	if h.github != nil {
		h.github.CloseIdleConnections()
		h.github = nil
	}
	if h.appTokens != nil {
		h.appTokens.CloseIdleConnections()
	}
}

// failureSummary is what a deployment's failure status says of err: one
// line naming the step, never the build's output, which may hold secrets
// that the build printed.
func failureSummary(err error) string {
	var be *deployer.BuildError
	if errors.As(err, &be) {
		// Only the program's name: its arguments are the configuration's,
		// which may hold what the repository's readers must not see.
		prog, _, _ := strings.Cut(be.Command, " ")
		if i := strings.LastIndexByte(prog, '/'); i >= 0 {
			prog = prog[i+1:]
		}
		prog = githubapi.OneLine(prog, 40)
		switch {
		case errors.Is(be.Err, context.DeadlineExceeded):
			return "build failed: " + prog + " ran past the deploy timeout"
		case errors.Is(be.Err, fs.ErrNotExist):
			return "build failed: " + prog + " not found"
		case be.ExitCode >= 0:
			return fmt.Sprintf("build failed: %s exited %d", prog, be.ExitCode)
		}
		return "build failed: " + prog + " was killed"
	}
	if err == nil {
		return "deploy failed"
	}
	line, _, _ := strings.Cut(err.Error(), "\n")
	return githubapi.OneLine("deploy failed: "+line, 140)
}
