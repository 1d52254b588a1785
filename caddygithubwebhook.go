// Package caddygithubwebhook is the module's root package: importing it
// registers every Caddy module and Caddyfile directive of this plugin (the
// github_webhook handler, app and admin API, all in ./caddywebhook). It is
// what xcaddy imports for
//
//	xcaddy build --with github.com/caddy-webhooks/caddy-github-webhook
//
// and for a local clone
//
//	xcaddy build --with github.com/caddy-webhooks/caddy-github-webhook=/path/to/clone
//
// and what ./cmd/caddy imports, so that a build from a clone and one with
// xcaddy hold the same modules.
package caddygithubwebhook

import (
	// The handler, the app, the admin API and the Caddyfile directive.
	_ "github.com/caddy-webhooks/caddy-github-webhook/caddywebhook"
)
