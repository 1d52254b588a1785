package caddywebhook

import (
	"context"
	"slices"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/forgeapi"
)

// deployReporter reports deploys to the forge: GitHub deployments
// (githubapi.Reporter) or commit statuses (forgeapi.Reporter). Its methods
// queue and never block; Start and Close run its goroutine.
type deployReporter interface {
	Start()
	Close(context.Context) error
	Started(commit, reason string)
	Succeeded(commit, siteURL string)
	Failed(commit, message string)
	Interrupted(commit string)
	RolledBack(commit, siteURL string)
}

// apiClient is a forge API client, closed with the configuration.
type apiClient interface {
	CloseIdleConnections()
}

// provisionForge is provisionGitHub for Gitea, Forgejo, GitLab and
// Bitbucket: deployments become commit statuses named
// deploy/<environment> (Bitbucket: build statuses keyed
// deploy-<environment>) linking the site, and require_checks reads the
// tip's statuses (GitLab: and its pipelines), with GitHub's waiting rules.
// It does no I/O.
func (h *Handler) provisionForge(token string, obs *observer) error {
	if h.Deployments == nil && h.RequireChecks == nil {
		return nil
	}
	var env string
	if h.Deployments != nil {
		env = h.Deployments.Environment
	}
	kind := h.forgeKind()
	client, err := forgeapi.New(forgeapi.Config{
		Kind:        forgeapi.Kind(kind),
		APIURL:      h.forgeAPIURL(),
		Token:       token,
		Repo:        h.Repo,
		Environment: env,
		Logger:      h.logger.Named(kind),
		OnRequest:   h.metrics.apiCounter(h.key),
	})
	if err != nil {
		return err
	}
	h.github = client
	if d := h.Deployments; d != nil {
		r, err := client.NewReporter(forgeapi.ReporterConfig{})
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
