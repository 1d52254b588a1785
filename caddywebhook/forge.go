package caddywebhook

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddy-webhooks/caddy-github-webhook/delivery"
)

// The forges that the forge setting names.
const (
	forgeGitHub    = "github"
	forgeGitea     = "gitea"
	forgeForgejo   = "forgejo"
	forgeGitLab    = "gitlab"
	forgeBitbucket = "bitbucket"
)

// forges are the forge setting's values, in the order the docs list them.
var forges = []string{forgeGitHub, forgeGitea, forgeForgejo, forgeGitLab, forgeBitbucket}

// forgeKind returns the forge the handler serves: forge, or github.
func (h *Handler) forgeKind() string {
	if h.Forge == "" {
		return forgeGitHub
	}
	return h.Forge
}

// forgeBase returns the forge's base URL without a trailing slash: forge_url,
// or the forge's public instance; "" for Gitea and Forgejo without one.
func (h *Handler) forgeBase() string {
	if h.ForgeURL != "" {
		return strings.TrimRight(h.ForgeURL, "/")
	}
	switch h.forgeKind() {
	case forgeGitHub:
		return "https://github.com"
	case forgeGitLab:
		return "https://gitlab.com"
	case forgeBitbucket:
		return "https://bitbucket.org"
	}
	return ""
}

// defaultRemote returns the remote fetched when remote is not set:
// <base>/<repo>.git, or "" when the forge has no base URL.
func (h *Handler) defaultRemote() string {
	base := h.forgeBase()
	if base == "" || h.Repo == "" {
		return ""
	}
	return base + "/" + h.Repo + ".git"
}

// forgeAPIURL returns the base of the forge's REST API: api_url, or where
// the forge serves it: https://api.github.com (<base>/api/v3 for GitHub
// Enterprise Server), <base>/api/v1 for Gitea and Forgejo, <base>/api/v4
// for GitLab, https://api.bitbucket.org/2.0 for Bitbucket Cloud. "" for
// Gitea and Forgejo without a base URL.
func (h *Handler) forgeAPIURL() string {
	if h.APIURL != "" {
		return strings.TrimRight(h.APIURL, "/")
	}
	base := h.forgeBase()
	switch h.forgeKind() {
	case forgeGitHub:
		if h.ForgeURL == "" || isGitHubCom(base) {
			return "https://api.github.com"
		}
		return base + "/api/v3"
	case forgeGitea, forgeForgejo:
		if base == "" {
			return ""
		}
		return base + "/api/v1"
	case forgeGitLab:
		return base + "/api/v4"
	case forgeBitbucket:
		return "https://api.bitbucket.org/2.0"
	}
	return ""
}

// isGitHubCom reports whether base is github.com's own address.
func isGitHubCom(base string) bool {
	u, err := url.Parse(base)
	return err == nil && strings.EqualFold(u.Hostname(), "github.com")
}

// validateForge checks forge and forge_url, and that a token never crosses
// a network in clear: with token, the base URL, remote and api_url are
// https, or http to a loopback host (a forge on the same machine).
func (h *Handler) validateForge() error {
	kind := h.forgeKind()
	known := false
	for _, f := range forges {
		known = known || kind == f
	}
	if !known {
		return fmt.Errorf("forge %q: want one of %s", h.Forge, strings.Join(forges, ", "))
	}
	if h.ForgeURL != "" {
		u, err := url.Parse(h.ForgeURL)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			return fmt.Errorf("forge %s: base URL %q is not an http or https URL", kind, h.ForgeURL)
		case u.User != nil:
			return fmt.Errorf("forge %s: the base URL must not carry credentials; use token", kind)
		case u.RawQuery != "" || u.Fragment != "":
			return fmt.Errorf("forge %s: base URL %q must not have a query or fragment", kind, h.ForgeURL)
		}
	}
	if (kind == forgeGitea || kind == forgeForgejo) && h.ForgeURL == "" &&
		(h.Remote == "" || h.Deployments != nil || h.RequireChecks != nil) {
		return fmt.Errorf("forge %s needs its base URL, for the default remote and its API: write forge %s https://git.example.com", kind, kind)
	}
	if h.Previews != nil {
		if err := forgePreviewsError(kind); err != nil {
			return err
		}
		if h.Previews.ForksLabel != "" && kind != forgeGitHub {
			return fmt.Errorf("previews: forks label works on GitHub only: forge %s's deliveries do not say which commit was labelled", kind)
		}
	}
	if h.App != nil && kind != forgeGitHub {
		return fmt.Errorf("app is a GitHub App's credentials: forge %s takes a token", kind)
	}
	if h.Token == "" {
		return nil
	}
	for _, c := range []struct{ what, url string }{
		{"forge " + kind + " base URL", h.ForgeURL},
		{"remote", h.Remote},
		{"api_url", h.APIURL},
	} {
		if err := clearTokenURL(c.what, c.url); err != nil {
			return err
		}
	}
	return nil
}

// clearTokenURL refuses raw, named what, when it is an http:// URL to a
// host other than a loopback one: a token sent there would cross the
// network in clear.
func clearTokenURL(what, raw string) error {
	u, err := url.Parse(raw)
	if raw == "" || err != nil || !strings.EqualFold(u.Scheme, "http") || isLoopback(u.Hostname()) {
		return nil
	}
	return fmt.Errorf("%s %q: a token is sent over http only to a loopback host (a forge on this machine); use https", what, raw)
}

// forgePreviewsError reports why previews cannot be on the forge kind, or
// nil: Bitbucket's pull requests are not read. Validate calls it when
// previews is set.
func forgePreviewsError(kind string) error {
	if kind == forgeBitbucket {
		return errors.New("previews are not available with forge bitbucket: its pull request deliveries are not read")
	}
	return nil
}

// newForge returns the reader of deliveries of the forge kind, verifying
// them with secrets.
func newForge(kind string, secrets [][]byte) (delivery.Forge, error) {
	switch kind {
	case forgeGitea:
		return delivery.NewGitea(secrets), nil
	case forgeForgejo:
		return delivery.NewForgejo(secrets), nil
	case forgeGitLab:
		return delivery.NewGitLab(secrets)
	case forgeBitbucket:
		return delivery.NewBitbucket(secrets), nil
	}
	return delivery.NewGitHub(secrets), nil
}

// setForge makes forge the handler's reader of deliveries.
func (h *Handler) setForge(forge delivery.Forge) {
	h.forge = forge
	h.idKey = http.CanonicalHeaderKey(forge.IDHeader())
}
