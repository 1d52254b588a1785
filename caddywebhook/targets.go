package caddywebhook

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
)

// closeTimeout bounds how long stopping a deployer may take when the last
// configuration naming its path is unloaded.
const closeTimeout = 15 * time.Second

// targets holds one deployer per path (its key: the cleaned absolute path)
// for as long as a loaded configuration names it, across config reloads.
var targets = caddy.NewUsagePool()

// target is a deployer shared by the configurations that name its path:
// during a reload, the old and the new one.
type target struct {
	d *deployer.Deployer

	mu      sync.Mutex
	holders []holder // oldest first; the last one's settings are in force
}

// holder is one handler attached to a target.
type holder struct {
	owner  <-chan struct{} // the Done channel of its configuration's context
	cfg    deployer.Config
	logger *zap.Logger // its configuration's logging
	web    forgeWeb    // where its forge shows commits, for the status page
}

// hold attaches a handler of the configuration owner to t. It fails when a
// handler of the same configuration holds t already: two handlers in one
// configuration must not share a path. When loaded, the deployer existed
// before, and cfg and logger replace its settings and logging from the next
// deploy on.
func (t *target) hold(owner <-chan struct{}, cfg deployer.Config, logger *zap.Logger, web forgeWeb, loaded bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, h := range t.holders {
		if h.owner == owner {
			return fmt.Errorf("path %s is used by another github_webhook handler of this configuration", cfg.Path)
		}
	}
	if loaded {
		if err := t.d.Update(cfg); err != nil {
			return fmt.Errorf("updating the deployer of %s: %w", cfg.Path, err)
		}
		t.d.SetLogger(logger)
	}
	t.holders = append(t.holders, holder{owner: owner, cfg: cfg, logger: logger, web: web})
	return nil
}

// release detaches the handler of owner. If it was the newest, as when a
// new configuration fails to load after its handler was provisioned, the
// settings and the logger of the newest remaining one are put back: the
// failed configuration's logs may be closed.
func (t *target) release(owner <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i := slices.IndexFunc(t.holders, func(h holder) bool { return h.owner == owner })
	if i < 0 {
		return
	}
	newest := i == len(t.holders)-1
	t.holders = slices.Delete(t.holders, i, i+1)
	if newest && len(t.holders) > 0 {
		back := t.holders[len(t.holders)-1]
		t.d.SetLogger(back.logger)
		if err := t.d.Update(back.cfg); err != nil {
			back.logger.Error("restoring deployer settings", zap.String("path", back.cfg.Path), zap.Error(err))
		}
	}
}

// Destruct stops the deployer; it is called when no loaded configuration
// names its path any more. A build in progress is killed.
func (t *target) Destruct() error {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	return t.d.Close(ctx)
}

// web returns where the forge of the newest holder shows commits.
func (t *target) web() forgeWeb {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.holders) == 0 {
		return forgeWeb{}
	}
	return t.holders[len(t.holders)-1].web
}

// allTargets returns the targets of every loaded configuration.
func allTargets() []*target {
	var list []*target
	targets.Range(func(_, v any) bool {
		if t, ok := v.(*target); ok {
			list = append(list, t)
		}
		return true
	})
	return list
}

// findTarget returns the target of path, as configured or as its absolute
// form, or nil.
func findTarget(path string) *target {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil
	}
	for _, t := range allTargets() {
		if s := t.d.Status(); s.Path == abs {
			return t
		}
	}
	return nil
}

// Interface guards
var _ caddy.Destructor = (*target)(nil)
