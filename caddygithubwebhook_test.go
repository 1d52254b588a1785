package caddygithubwebhook_test

import (
	"testing"

	"github.com/caddyserver/caddy/v2"

	_ "github.com/caddy-webhooks/caddy-github-webhook"
)

// TestRootRegistersModules checks what xcaddy relies on when it builds
// Caddy "--with" this module: importing the module's root package alone
// registers the handler, the app and the admin API. Without a root package,
// xcaddy fails with "cannot find module providing package".
func TestRootRegistersModules(t *testing.T) {
	for _, id := range []string{"http.handlers.github_webhook", "github_webhook", "admin.api.github_webhook"} {
		if _, err := caddy.GetModule(id); err != nil {
			t.Errorf("importing the root package does not register %s: %v", id, err)
		}
	}
}
