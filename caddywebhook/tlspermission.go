package caddywebhook

import (
	"context"
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
)

func init() {
	caddy.RegisterModule(TLSPermission{})
}

// TLSPermission allows on-demand TLS certificates only for the hosts of
// previews that exist (see previews), so that on-demand TLS cannot be made
// to request certificates for any name that reaches the server. Use it as
// the global option
//
//	on_demand_tls {
//		permission github_webhook
//	}
//
// with tls { on_demand } in the previews' site block. A preview exists from
// the delivery that opened it (its certificate can be obtained while it
// builds) until it is removed.
type TLSPermission struct{}

// CaddyModule returns the Caddy module information.
func (TLSPermission) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "tls.permission.github_webhook",
		New: func() caddy.Module { return new(TLSPermission) },
	}
}

// CertificateAllowed returns nil when name is the host of a preview of a
// github_webhook target of this process.
func (TLSPermission) CertificateAllowed(_ context.Context, name string) error {
	for _, t := range allTargets() {
		if t.d.PreviewHost(name) {
			return nil
		}
	}
	return fmt.Errorf("%s: %w: not the host of a github_webhook preview", name, caddytls.ErrPermissionDenied)
}

// UnmarshalCaddyfile reads "permission github_webhook", which takes no
// arguments.
func (*TLSPermission) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module's name
	if d.NextArg() || d.NextBlock(0) {
		return d.ArgErr()
	}
	return nil
}

// Interface guards
var (
	_ caddy.Module                = (*TLSPermission)(nil)
	_ caddytls.OnDemandPermission = (*TLSPermission)(nil)
	_ caddyfile.Unmarshaler       = (*TLSPermission)(nil)
)
