package caddywebhook

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/fileserver"
	"go.uber.org/zap"
)

// Mistakes that load without an error but serve the wrong thing, or fail
// only at the first deploy, caught when Caddy loads the configuration: the
// Caddyfile adapter refuses what it can see (caddyfile.go), Provision warns
// about what a handler's own settings show (warnAtLoad), and the app, when
// it starts, refuses what only the HTTP app's routes show (checkRoutes).

// literal reports whether a secret or token is written as its value: no
// {env.*} or {file.*} placeholder in it.
func literal(s string) bool {
	return !envPlaceholder.MatchString(s) && !filePlaceholder.MatchString(s)
}

// sameFolder reports whether root, as Caddy would serve it, is the folder
// path. A root with a placeholder is never path: it is known per request.
func sameFolder(root, path string) bool {
	if strings.Contains(root, "{") || root == "" || path == "" {
		return false
	}
	r, err1 := filepath.Abs(root)
	p, err2 := filepath.Abs(path)
	return err1 == nil && err2 == nil && r == p
}

// servedFolder is the folder to serve for path, as the user wrote path.
func servedFolder(path string) string {
	return strings.TrimRight(path, `/\`) + "/current"
}

// warnAtLoad logs what loads but is likely a mistake: a secret or token
// written as its value, which then stands in the JSON configuration, the
// admin API and autosave; a build program that is not on the PATH its
// commands get, which fails the first deploy (looking it up is a few
// stats, no slow I/O).
func (h *Handler) warnAtLoad() {
	for i, s := range h.Secret {
		if literal(s) {
			h.logger.Warn("a webhook secret is written into the configuration, where the JSON, the admin API and autosave show it: "+
				"prefer {env.*} or {file.*}, such as {env.GITHUB_WEBHOOK_SECRET} or {file./etc/caddy/webhook-secret}",
				zap.String("secret", fmt.Sprintf("secret %d", i+1)))
		}
	}
	if h.Token != "" && literal(h.Token) {
		h.logger.Warn("the token is written into the configuration, where the JSON, the admin API and autosave show it: " +
			"prefer {env.*} or {file.*}, such as {env.GITHUB_TOKEN} or {file./etc/caddy/github-token}")
	}

	missing, path := h.cfg.MissingPrograms()
	for _, prog := range missing {
		h.logger.Warn("a build program is not on the PATH of the commands: the deploy will fail until it is installed "+
			"where the user Caddy runs as finds it, or command names it by its full path",
			zap.String("program", prog), zap.String("path_env", path))
	}
}

// webhook is what checkRoutes finds github_webhook handlers by: the
// handler, and modules that embed it.
type webhook interface{ webhookHandler() *Handler }

func (h *Handler) webhookHandler() *Handler { return h }

// checkRoutes refuses routes of the HTTP app that load but serve the wrong
// thing: a github_webhook handler without a matcher followed by other
// routes or handlers, which it never passes a request to (every page of
// the site is answered 405), and a root (the vars handler's, which the
// Caddyfile's root directive makes, or file_server's) that is the folder
// of a github_webhook handler rather than its current: that serves
// state.json, cache.git and the build logs instead of the site.
func checkRoutes(app *caddyhttp.App) error {
	var (
		hooks []*Handler
		roots []servedRoot
		errs  []string
	)
	var walk func(routes caddyhttp.RouteList)
	walk = func(routes caddyhttp.RouteList) {
		for i, route := range routes {
			for j, handler := range route.Handlers {
				switch v := handler.(type) {
				case webhook:
					h := v.webhookHandler()
					hooks = append(hooks, h)
					if len(route.MatcherSets) == 0 {
						if next := shadowed(route.Handlers[j+1:], routes[i+1:], route.Group); next != "" {
							errs = append(errs, fmt.Sprintf("the github_webhook handler of %s has no matcher, so it answers every request "+
								"and %s after it is never reached (every page is answered 405): give it one: "+
								"github_webhook /_github { ... } in a Caddyfile, \"match\": [{\"path\": [\"/_github\"]}] in JSON",
								h.Path, next))
						}
					}
				case *caddyhttp.VarsMiddleware:
					if root, ok := (*v)["root"].(string); ok {
						roots = append(roots, servedRoot{root: root, what: "root", fix: "root * %s"})
					}
				case *fileserver.FileServer:
					if v.Root != "" {
						roots = append(roots, servedRoot{root: v.Root, what: "file_server's root", fix: "file_server { root %s }"})
					}
				case *caddyhttp.Subroute:
					walk(v.Routes)
					if v.Errors != nil {
						walk(v.Errors.Routes)
					}
				}
			}
		}
	}
	names := make([]string, 0, len(app.Servers))
	for name := range app.Servers {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		srv := app.Servers[name]
		walk(srv.Routes)
		if srv.Errors != nil {
			walk(srv.Errors.Routes)
		}
	}
	for _, r := range roots {
		for _, h := range hooks {
			if sameFolder(r.root, h.Path) {
				errs = append(errs, fmt.Sprintf("%s %s serves the folder of github_webhook's deployer (state.json, cache.git, "+
					"build logs) instead of the site: write %s", r.what, r.root, fmt.Sprintf(r.fix, servedFolder(h.Path))))
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	slices.Sort(errs)
	return fmt.Errorf("%s", strings.Join(slices.Compact(errs), "; "))
}

// servedRoot is a root folder that a route serves files from.
type servedRoot struct {
	root string
	what string // what set it, for the error
	fix  string // the Caddyfile line to write instead, %s the folder
}

// shadowed returns the name of the first handler that a handler which never
// passes a request on keeps from running: the handlers after it in its
// route, then those of the routes after it, but for the routes of its own
// group (which only one route of runs anyway). "" when there is none.
func shadowed(after []caddyhttp.MiddlewareHandler, routes caddyhttp.RouteList, group string) string {
	if len(after) > 0 {
		return handlerName(after[0])
	}
	for _, r := range routes {
		if group != "" && r.Group == group {
			continue
		}
		if len(r.Handlers) > 0 {
			return handlerName(r.Handlers[0])
		}
	}
	return ""
}

// handlerName is the name of handler's module, as a Caddyfile writes it
// (file_server, reverse_proxy), or its type.
func handlerName(handler caddyhttp.MiddlewareHandler) string {
	if m, ok := handler.(caddy.Module); ok {
		if name := m.CaddyModule().ID.Name(); name != "" {
			return name
		}
	}
	return fmt.Sprintf("%T", handler)
}
