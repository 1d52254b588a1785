// Package caddywebhook is the Caddy HTTP handler github_webhook.
package caddywebhook
