package caddywebhook

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/dustin/go-humanize"
	"go.uber.org/zap"
)

func init() {
	httpcaddyfile.RegisterDirective("github_webhook", parseCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("github_webhook", httpcaddyfile.Before, "file_server")
}

// parseCaddyfile sets up the handler, and its route, from Caddyfile tokens.
// Syntax:
//
//	github_webhook <matcher> {
//		repo        <owner/name>
//		secret      <value>
//		path        <dir>
//		branch      <name>
//		remote      <url>
//		command     <program> [<args...>]
//		publish     <subdir>
//		env         <key> <value>
//		timeout     <duration>
//		keep        <n>
//		depth       <n>
//		submodules
//		ssh_key     <file>
//		known_hosts <file>
//		token       <value>
//		app         <app id> <key file> [<installation id>]
//		poll        <duration>
//		max_body    <size>
//		cache       <dir> [<dir>...]
//		sandbox     [{ network none|outbound }]
//		deployments <environment> [<url>]
//		require_checks [<name>...]
//		api_url     <url>
//		cluster     <name>
//		cluster_poll <duration>
//		notify      <url> [{ format json|slack|discord|ntfy; secret <value>; on <kinds...> }]
//		forge       github|gitea|forgejo|gitlab|bitbucket [<base url>]
//		previews    <host template> {
//			max   <n>
//			ttl   <duration>
//			forks off|label <name>
//		}
//		limits      { cpu <cores>; memory <size> }
//	}
//
// The matcher is required in a site's block: the handler answers every
// request that reaches it and never passes one on, so without a matcher
// every page of the site would be answered 405. Write a path, such as
// /_github, or * for a site that receives nothing but deliveries. Inside
// handle or route, whose own matcher chooses the requests, it may be left
// out. repo, secret and path are required. secret, command, env, cache and
// notify may be repeated; every other subdirective may appear once. Write the secret and
// the token as placeholders ({env.NAME} or {file./path}): they are resolved
// when the configuration loads, so their values never appear in the adapted
// JSON. A command runs as the argv it is written as, never through a shell.
// depth 0 fetches the full history; keep 0 and timeout 0 mean the defaults
// (3, 10m), as in JSON. max_body takes a size such as 25MiB. cache names
// folders of the release carried from build to build, such as
// resources/_gen or node_modules.
// sandbox runs the commands under bubblewrap (bwrap); its network is
// outbound (the default: no path to the host's loopback) or none. deployments reports
// deploys to GitHub as deployments in environment, url being the site's
// address; it needs token. require_checks deploys a tip only once the
// named checks (check runs, workflows or status contexts), or all of its
// checks and check suites, passed; a name may pin its source:
// CI@app/github-actions is the check run CI of that GitHub App alone,
// CI@.github/workflows/ci.yml the workflow CI run from that file. api_url is the REST API's base, for GitHub Enterprise
// Server. cluster shares deploys with every node whose Caddy uses the same
// storage and names the same group; cluster_poll sets how often the group's
// storage is read while no node builds (2s). limits caps the CPU (in
// cores, 1.5) and memory (a size, 512MiB) of the build's commands, where
// cgroup v2 allows it (refused when the configuration loads elsewhere).
// forge names the forge the repository lives on (default github) and its
// base URL, from which remote and the API's address default.
//
// Mistakes that a Caddyfile can show are refused here, where the error
// names the file and the line: no matcher, a missing repo, secret or path,
// a root that serves path instead of path/current (when root comes before
// github_webhook in the block), a duration that does not parse. A secret or
// token that {$NAME} put in when the Caddyfile was adapted is logged as a
// warning: it is in the adapted JSON now.
func parseCaddyfile(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	if !h.Next() {
		return nil, h.ArgErr()
	}
	matcherSet, hasMatcher, err := h.MatcherToken()
	if err != nil {
		return nil, err
	}
	if hasMatcher {
		h.Delete()
	}
	h.Reset()
	h.Next() // the directive's name, for errors that point at it
	if !hasMatcher && topLevel(h) {
		return nil, h.Errf("github_webhook needs a matcher: without one it answers every request " +
			"of the site, every page with 405; write github_webhook /_github { ... } " +
			"(or github_webhook * { ... } in a site that receives nothing but deliveries)")
	}

	handler := new(Handler)
	h.Reset()
	if err := handler.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	h.Reset()
	h.Next()
	if err := checkCaddyfile(h, handler); err != nil {
		return nil, err
	}
	warnCaddyfile(h, caddy.Log().Named("github_webhook"))
	return h.NewRoute(matcherSet, handler), nil
}

// topLevel reports whether the directive being parsed is one of a site
// block's own, not inside handle, route or a named route, whose matcher may
// choose its requests. A site block's directives get the adapter's State as
// their BlockState; a nested block's get a copy of it.
func topLevel(h httpcaddyfile.Helper) bool {
	const probe = "github_webhook.top_level"
	if h.State == nil || h.BlockState == nil {
		return false // not the Caddyfile adapter's own helper
	}
	h.BlockState[probe] = true
	_, top := h.State[probe]
	delete(h.BlockState, probe)
	return top
}

// checkCaddyfile refuses what the Caddyfile adapter can see is wrong with
// the handler that h's tokens set up. h is at the directive's name, which
// errors point at.
func checkCaddyfile(h httpcaddyfile.Helper, handler *Handler) error {
	if handler.Repo == "" {
		return h.Errf("repo is required: add repo <owner/name> to the github_webhook block")
	}
	if len(handler.Secret) == 0 {
		return h.Errf("secret is required: add secret {env.GITHUB_WEBHOOK_SECRET} (or {file./path/of/the/secret}) " +
			"to the github_webhook block, with the secret given to GitHub")
	}
	if handler.Path == "" {
		return h.Errf("path is required: add path <dir> to the github_webhook block, " +
			"the folder the deployer owns, and serve <dir>/current")
	}
	if handler.App != nil && handler.Token != "" {
		return h.Errf("app and token are both set: GitHub App credentials replace the token, keep one of them")
	}
	// The root directive leaves an unmatched root in BlockState for the
	// directives after it.
	if root, ok := h.BlockState["root"].(string); ok && sameFolder(root, handler.Path) {
		return h.Errf("root %s serves the deployer's folder (state.json, cache.git, build logs) "+
			"instead of the site: write root * %s", root, servedFolder(handler.Path))
	}
	return nil
}

// warnCaddyfile logs, with the file and line, each secret or token of the
// github_webhook block at h whose value is that of an environment variable:
// {$NAME} put it in when the Caddyfile was adapted, so it is in the adapted
// JSON, the admin API and autosave. {env.NAME} is read when the
// configuration loads instead. It never logs a value.
func warnCaddyfile(h httpcaddyfile.Helper, logger *zap.Logger) {
	for h.NextBlock(0) {
		name := h.Val()
		args := h.RemainingArgs()
		if (name != "secret" && name != "token" && name != "notify") || len(args) != 1 || !literal(args[0]) {
			continue
		}
		if env := environmentHolding(args[0]); env != "" {
			logger.Warn(name+" has the value of an environment variable, written into the adapted JSON by {$"+env+"}: "+
				"write {env."+env+"}, which is read when the configuration loads and never appears in the JSON",
				zap.String("file", h.File()), zap.Int("line", h.Line()), zap.String("variable", env))
		}
	}
}

// environmentHolding returns the name of the first environment variable,
// in sorted order, whose value is v, or "". Values shorter than 8 bytes
// are too likely to be another variable's by chance (SHLVL=1).
func environmentHolding(v string) string {
	if len(v) < 8 {
		return ""
	}
	var names []string
	for _, kv := range os.Environ() {
		if k, val, ok := strings.Cut(kv, "="); ok && k != "" && val == v {
			names = append(names, k)
		}
	}
	if len(names) == 0 {
		return ""
	}
	slices.Sort(names)
	return names[0]
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens; see
// parseCaddyfile for the syntax.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}

	seen := make(map[string]bool)
	for d.NextBlock(0) {
		name := d.Val()
		switch name {
		case "secret", "command", "env", "cache", "notify":
		default:
			if seen[name] {
				return d.Errf("%s may be given only once", name)
			}
		}
		seen[name] = true

		switch name {
		case "repo":
			if !d.AllArgs(&h.Repo) {
				return d.ArgErr()
			}
		case "secret":
			var secret string
			if !d.AllArgs(&secret) {
				return d.ArgErr()
			}
			h.Secret = append(h.Secret, secret)
		case "path":
			if !d.AllArgs(&h.Path) {
				return d.ArgErr()
			}
		case "branch":
			if !d.AllArgs(&h.Branch) {
				return d.ArgErr()
			}
		case "remote":
			if !d.AllArgs(&h.Remote) {
				return d.ArgErr()
			}
		case "command":
			argv := d.RemainingArgs()
			if len(argv) == 0 {
				return d.ArgErr()
			}
			h.Command = append(h.Command, argv)
		case "publish":
			if !d.AllArgs(&h.Publish) {
				return d.ArgErr()
			}
		case "env":
			var key, value string
			if !d.AllArgs(&key, &value) {
				return d.ArgErr()
			}
			if _, ok := h.Env[key]; ok {
				return d.Errf("env %s is set twice", key)
			}
			if h.Env == nil {
				h.Env = make(map[string]string)
			}
			h.Env[key] = value
		case "timeout", "poll":
			dur, err := durationArg(d, name)
			if err != nil {
				return err
			}
			if name == "timeout" {
				h.Timeout = caddy.Duration(dur)
			} else {
				h.Poll = caddy.Duration(dur)
			}
		case "keep", "depth":
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(s)
			if err != nil {
				return d.Errf("parsing %s: %q is not a whole number", name, s)
			}
			// Ranges are checked in one place, the deployer's Validate.
			if name == "keep" {
				h.Keep = n
			} else {
				h.Depth = &n
			}
		case "submodules":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.Submodules = true
		case "cache":
			dirs := d.RemainingArgs()
			if len(dirs) == 0 {
				return d.ArgErr()
			}
			for _, dir := range dirs {
				if err := deployer.ValidateCache(dir); err != nil {
					return d.Err(err.Error())
				}
			}
			h.Cache = append(h.Cache, dirs...)
		case "sandbox":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.Sandbox = true
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				switch d.Val() {
				case "network":
					var v string
					if !d.AllArgs(&v) {
						return d.ArgErr()
					}
					if v != deployer.NetworkNone && v != "outbound" {
						return d.Errf("sandbox network %q: want none or outbound", v)
					}
					h.SandboxNetwork = v
				default:
					return d.Errf("unknown sandbox subdirective %q", d.Val())
				}
			}
		case "ssh_key":
			if !d.AllArgs(&h.SSHKey) {
				return d.ArgErr()
			}
		case "known_hosts":
			if !d.AllArgs(&h.KnownHosts) {
				return d.ArgErr()
			}
		case "token":
			if !d.AllArgs(&h.Token) {
				return d.ArgErr()
			}
		case "app":
			args := d.RemainingArgs()
			if len(args) < 2 || len(args) > 3 {
				return d.ArgErr()
			}
			app := &GitHubApp{KeyFile: args[1]}
			var err error
			if app.AppID, err = strconv.ParseInt(args[0], 10, 64); err != nil || app.AppID <= 0 {
				return d.Errf("app: the app's ID %q is not a number (write app <app id> <key file> [<installation id>])", args[0])
			}
			if len(args) == 3 {
				if app.InstallationID, err = strconv.ParseInt(args[2], 10, 64); err != nil || app.InstallationID <= 0 {
					return d.Errf("app: the installation's ID %q is not a number", args[2])
				}
			}
			h.App = app
		case "deployments":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return d.ArgErr()
			}
			h.Deployments = &Deployments{Environment: args[0]}
			if len(args) == 2 {
				h.Deployments.URL = args[1]
			}
		case "require_checks":
			h.RequireChecks = &RequireChecks{Names: d.RemainingArgs()}
		case "forge":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return d.ArgErr()
			}
			h.Forge = args[0]
			if len(args) == 2 {
				h.ForgeURL = args[1]
			}
		case "api_url":
			if !d.AllArgs(&h.APIURL) {
				return d.ArgErr()
			}
		case "cluster", "cluster_poll":
			if err := h.unmarshalCluster(d, name); err != nil {
				return err
			}
		case "notify":
			if err := h.unmarshalNotify(d); err != nil {
				return err
			}
		case "previews":
			if err := h.unmarshalPreviews(d); err != nil {
				return err
			}
		case "limits":
			if err := h.unmarshalLimits(d); err != nil {
				return err
			}
		case "max_body":
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			size, err := humanize.ParseBytes(s)
			if err != nil {
				return d.Errf("parsing max_body: %v", err)
			}
			if size == 0 || size > 1<<40 {
				return d.Errf("max_body %s must be between 1 byte and 1 TiB", s)
			}
			h.MaxBody = int64(size)
		default:
			return d.Errf("unrecognized subdirective %q", name)
		}
	}
	return nil
}

// durationArg reads the one argument of the subdirective name as a
// duration. Its error shows the forms to write: "10 minutes" is two
// arguments, "10min" no unit Go knows.
func durationArg(d *caddyfile.Dispenser, name string) (time.Duration, error) {
	args := d.RemainingArgs()
	if len(args) == 1 {
		if dur, err := caddy.ParseDuration(args[0]); err == nil {
			return dur, nil
		}
	}
	const forms = "write 10m, 90s or 1h30m (units ms, s, m, h, d)"
	if len(args) == 0 {
		return 0, d.Errf("%s needs a duration: %s", name, forms)
	}
	return 0, d.Errf("%s %q is not a duration: %s", name, strings.Join(args, " "), forms)
}
