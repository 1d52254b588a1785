package caddywebhook

import (
	"fmt"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(new(App))
}

// App starts the deployers of the github_webhook handlers of a
// configuration when Caddy runs that configuration. Handlers load it
// themselves; it has nothing to configure.
//
// Deployers are made in Provision but started here, because Caddy also
// provisions a configuration it only validates (`caddy validate`, the
// admin API's checks): such a run must not lock a folder that a running
// Caddy deploys into, nor start a deploy.
type App struct {
	ctx       caddy.Context
	mu        sync.Mutex
	targets   []*target
	reporters []deployReporter
	starts    []func() // more to start with the configuration (onStart)
}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "github_webhook",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision keeps the configuration's context, through which Start sees the
// HTTP app's routes.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	return nil
}

// add registers a target, and the reporter of its handler's deployments
// (nil if none), to start with the configuration.
func (a *App) add(t *target, r deployReporter) {
	a.mu.Lock()
	a.targets = append(a.targets, t)
	if r != nil {
		a.reporters = append(a.reporters, r)
	}
	a.mu.Unlock()
}

// onStart registers fn, to run when the configuration starts.
func (a *App) onStart(fn func()) {
	a.mu.Lock()
	a.starts = append(a.starts, fn)
	a.mu.Unlock()
}

// Start checks the HTTP app's routes (see checkRoutes), then starts the
// deployment reporters of the configuration's handlers, then the deployer
// of every target. A deployer that runs already, kept from the
// configuration before a reload, goes on as it is. It fails, and with it
// the configuration, when the routes serve what they must not, or another
// process deploys into a path. The routes are checked here rather than in
// Provision because only once every app is provisioned are they all known:
// `caddy validate` does not get this far.
func (a *App) Start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.targets) > 0 && a.ctx.Context != nil {
		if app, err := a.ctx.AppIfConfigured("http"); err == nil {
			if httpApp, ok := app.(*caddyhttp.App); ok {
				if err := checkRoutes(httpApp); err != nil {
					return err
				}
			}
		}
	}
	for _, r := range a.reporters {
		r.Start()
	}
	for _, fn := range a.starts {
		fn()
	}
	for _, t := range a.targets {
		if err := t.d.Start(); err != nil {
			return fmt.Errorf("starting the deployer of %s: %w", t.d.Status().Path, err)
		}
	}
	return nil
}

// Stop does nothing: deployers outlive a configuration that a reload
// replaces, and stop when no configuration names their path any more.
func (*App) Stop() error { return nil }

// Interface guards
var (
	_ caddy.Module      = (*App)(nil)
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
)
