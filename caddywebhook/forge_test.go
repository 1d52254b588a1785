package caddywebhook

import (
	"strings"
	"testing"
)

// TestForgeDefaults: the default remote and API address of each forge,
// from its base URL.
func TestForgeDefaults(t *testing.T) {
	for _, tc := range []struct {
		forge, base, apiURL string
		remote, api         string
	}{
		{"", "", "", "https://github.com/o/r.git", "https://api.github.com"},
		{"github", "https://github.com/", "", "https://github.com/o/r.git", "https://api.github.com"},
		{"github", "https://ghe.example.com", "", "https://ghe.example.com/o/r.git", "https://ghe.example.com/api/v3"},
		{"gitea", "https://git.example.com/", "", "https://git.example.com/o/r.git", "https://git.example.com/api/v1"},
		{"forgejo", "http://127.0.0.1:3000", "", "http://127.0.0.1:3000/o/r.git", "http://127.0.0.1:3000/api/v1"},
		{"gitlab", "", "", "https://gitlab.com/o/r.git", "https://gitlab.com/api/v4"},
		{"gitlab", "https://example.com/gitlab", "", "https://example.com/gitlab/o/r.git", "https://example.com/gitlab/api/v4"},
		{"gitlab", "https://gitlab.example.com", "https://api.example.com/v4/", "https://gitlab.example.com/o/r.git", "https://api.example.com/v4"},
		{"bitbucket", "", "", "https://bitbucket.org/o/r.git", "https://api.bitbucket.org/2.0"},
	} {
		h := &Handler{Repo: "o/r", Forge: tc.forge, ForgeURL: tc.base, APIURL: tc.apiURL}
		if got := h.deployerConfig("").Remote; got != tc.remote {
			t.Errorf("forge %q %q: remote %q, want %q", tc.forge, tc.base, got, tc.remote)
		}
		if got := h.forgeAPIURL(); got != tc.api {
			t.Errorf("forge %q %q: API %q, want %q", tc.forge, tc.base, got, tc.api)
		}
	}
	// A remote that is set wins.
	h := &Handler{Repo: "o/r", Forge: "gitlab", Remote: "git@gitlab.com:o/r.git"}
	if got := h.deployerConfig("").Remote; got != "git@gitlab.com:o/r.git" {
		t.Errorf("remote %q", got)
	}
}

// TestValidateForge: the forge's name and base URL, and a token never sent
// over http but to a loopback host, whether the URL is the base, remote or
// api_url.
func TestValidateForge(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    Handler
		err  string // a part of the error; none when empty
	}{
		{name: "default", h: Handler{}},
		{name: "gitea", h: Handler{Forge: "gitea", ForgeURL: "https://git.example.com"}},
		{name: "unknown forge", h: Handler{Forge: "sourcehut"}, err: `forge "sourcehut": want one of github, gitea, forgejo, gitlab, bitbucket`},
		{name: "forge in capitals", h: Handler{Forge: "GitLab"}, err: "want one of"},
		{name: "gitea without base", h: Handler{Forge: "gitea"}, err: "forge gitea needs its base URL"},
		{name: "forgejo without base, remote set", h: Handler{Forge: "forgejo", Remote: "https://codeberg.org/o/r.git"}},
		{name: "forgejo without base, deployments", h: Handler{Forge: "forgejo", Remote: "https://codeberg.org/o/r.git",
			Deployments: &Deployments{Environment: "production"}}, err: "needs its base URL"},
		{name: "base not a URL", h: Handler{Forge: "gitlab", ForgeURL: "gitlab.example.com"}, err: "is not an http or https URL"},
		{name: "base with credentials", h: Handler{Forge: "gitlab", ForgeURL: "https://u:pass@gitlab.example.com"}, err: "must not carry credentials"},
		{name: "base with a query", h: Handler{Forge: "gitlab", ForgeURL: "https://gitlab.example.com/?a=b"}, err: "query"},
		{name: "base over http, no token", h: Handler{Forge: "gitea", ForgeURL: "http://git.example.com"}},
		{name: "base over http with a token", h: Handler{Forge: "gitea", ForgeURL: "http://git.example.com", Token: "t"},
			err: `forge gitea base URL "http://git.example.com": a token is sent over http only to a loopback host`},
		{name: "base over http to loopback with a token", h: Handler{Forge: "gitea", ForgeURL: "http://127.0.0.1:3000", Token: "t"}},
		{name: "base over http to localhost with a token", h: Handler{Forge: "forgejo", ForgeURL: "http://localhost:3000/", Token: "t"}},
		{name: "base over http to ::1 with a token", h: Handler{Forge: "gitlab", ForgeURL: "http://[::1]:8080", Token: "t"}},
		{name: "remote over http with a token", h: Handler{Remote: "http://git.example.com/o/r.git", Token: "t"},
			err: `remote "http://git.example.com/o/r.git": a token is sent over http only to a loopback host`},
		{name: "remote over HTTP with a token", h: Handler{Remote: "HTTP://git.example.com/o/r.git", Token: "t"}, err: "loopback"},
		{name: "remote over http to loopback with a token", h: Handler{Remote: "http://127.0.0.1:3000/o/r.git", Token: "t"}},
		{name: "api_url over http with a token", h: Handler{APIURL: "http://ghe.example.com/api/v3", Token: "t"}, err: "api_url"},
		{name: "api_url over http to loopback with a token", h: Handler{APIURL: "http://127.0.0.1:8080/api/v3", Token: "t"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.h.validateForge()
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("error %v, want none", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one with %q", err, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), "pass") {
				t.Errorf("error %q quotes the credentials", err)
			}
		})
	}
	if forgePreviewsError("bitbucket") == nil || forgePreviewsError("gitea") != nil || forgePreviewsError("gitlab") != nil {
		t.Error("previews: an error for bitbucket alone")
	}
}
