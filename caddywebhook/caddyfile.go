package caddywebhook

import (
	"strconv"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("github_webhook", parseCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("github_webhook", httpcaddyfile.Before, "file_server")
}

// parseCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	github_webhook [<matcher>] {
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
//		poll        <duration>
//		max_body    <size>
//		cache       <dir> [<dir>...]
//		sandbox     [{ network none|outbound }]
//		deployments <environment> [<url>]
//		require_checks [<name>...]
//		api_url     <url>
//		cluster     <name>
//		cluster_poll <duration>
//	}
//
// repo, secret and path are required. secret, command, env and cache may
// be repeated; every other subdirective may appear once. Write the secret and
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
// live record is read (2s: a follower goes live within it of the builder).
func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	handler := new(Handler)
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return handler, err
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
		case "secret", "command", "env", "cache":
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
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(s)
			if err != nil {
				return d.Errf("parsing %s: %v", name, err)
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
		case "api_url":
			if !d.AllArgs(&h.APIURL) {
				return d.ArgErr()
			}
		case "cluster", "cluster_poll":
			if err := h.unmarshalCluster(d, name); err != nil {
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
