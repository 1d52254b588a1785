// Command caddy is Caddy with its standard modules and the github_webhook
// handler, built the same way xcaddy would build it. From a clone:
//
//	go build -o caddy ./cmd/caddy
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// Caddy's standard modules, as in xcaddy's generated main.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// This module: its root package, as xcaddy imports it.
	_ "github.com/caddy-webhooks/caddy-github-webhook"
)

func main() {
	caddycmd.Main()
}
