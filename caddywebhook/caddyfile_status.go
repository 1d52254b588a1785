package caddywebhook

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("github_webhook_status", parseStatusCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("github_webhook_status", httpcaddyfile.Before, "file_server")
}

// parseStatusCaddyfile sets up the status page from Caddyfile tokens.
// Syntax:
//
//	github_webhook_status [<matcher>]
//
// It takes no argument and no block. It answers every request its matcher
// lets through, so give it one (a path such as /_deploys) unless the site
// is the page alone, and put basic_auth in front of it.
func parseStatusCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	p := new(StatusPage)
	err := p.UnmarshalCaddyfile(h.Dispenser)
	return p, err
}

// UnmarshalCaddyfile reads github_webhook_status, which takes no argument
// and no block.
func (p *StatusPage) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive's name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		return d.Errf("github_webhook_status takes no block; unrecognized subdirective %q", d.Val())
	}
	return nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*StatusPage)(nil)
