// Package deployer turns "something changed" into a new live release of a
// static site: it fetches a git branch into a cache repository, materialises
// the tip into a fresh release folder, runs the build commands there, and
// switches the live symlink to it atomically.
//
// The package knows nothing of HTTP, Caddy or GitHub payloads. A caller
// creates one Deployer per target folder with New, wakes it with Wake whenever
// the branch may have moved, reads Status, and stops it with Close.
//
// Layout of a target folder (Config.Path):
//
//	<path>/current            -> releases/<name>[/<publish>]  (relative symlink, the live site)
//	<path>/releases/<name>/   one release: a checkout of one commit, plus its build output
//	<path>/releases/<name>.log  the build log of that release
//	<path>/cache.git/         the cache repository, fetched into on every deploy
//	<path>/cache/             the build cache home (XDG_CACHE_HOME, npm, Hugo), with commands
//	<path>/state.json         what the deployer knows across restarts
//	<path>/.lock              held while a Deployer owns the folder
package deployer

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Defaults of Config's settings.
const (
	// DefaultTimeout is the Timeout of a zero Config.Timeout.
	DefaultTimeout = 10 * time.Minute
	// DefaultKeep is the Keep of a zero Config.Keep.
	DefaultKeep = 3
	// DefaultDepth is the depth to configure when none is asked for: a
	// zero Config.Depth means the full history, so a caller applies this
	// default itself (the Caddy handler does for an unset depth).
	DefaultDepth = 1
)

// Config describes one deploy target. Validate is the one place that checks
// its settings. The zero value of every optional field but Depth means its
// documented default.
type Config struct {
	// Path is the folder the deployer owns. The live site is Path/current.
	// Required; must be absolute.
	Path string

	// Remote is where to fetch from: an https or ssh URL, a local path, or a
	// file:// URL. Required. It must not carry credentials: use Token.
	Remote string

	// Repo is the repository's owner/name. It is only passed to commands as
	// DEPLOY_REPO and shown in Status.
	Repo string

	// Branch is the branch to deploy. Empty means the remote's default branch
	// (its HEAD), resolved on the first deploy.
	Branch string

	// Commands run in order inside a new release, as argv (never through a
	// shell), with the release as working directory.
	Commands [][]string

	// Publish is the subfolder of the release that goes live; empty for the
	// release root. It must stay inside the release, symlinks resolved.
	Publish string

	// Env is extra environment for Commands, as KEY=value pairs appended to
	// the process's own environment.
	Env []string

	// Unset names variables of the process's environment that Commands do
	// not get, such as those that hold the webhook secret or the token:
	// a build script of the repository has no business reading them.
	Unset []string

	// Timeout bounds one deploy, fetch and build together. Past it the build's
	// whole process group is killed. Zero means DefaultTimeout; negative is
	// an error.
	Timeout time.Duration

	// Keep is how many releases stay on disk for rollback, the live one
	// included. Zero means DefaultKeep; negative is an error. Without
	// Commands, and with Keep of 2 or more, one more folder stays: the spare,
	// the newest release past Keep, never live and never offered for
	// rollback, which the next deploy reuses (updating only what changed).
	Keep int

	// Depth is the fetch depth, as git fetch --depth takes it, also for
	// submodules. Zero fetches the full history (for builds that read it,
	// such as "last modified" dates); negative is an error. It means what
	// the Caddyfile's and the JSON's depth mean; the handler passes
	// DefaultDepth when none is set.
	Depth int

	// Submodules also checks out submodules, recursively.
	Submodules bool

	// Cache names folders of the release, relative to it (such as
	// resources/_gen or node_modules), that carry a build's work to the
	// next: before Commands run, each is copied from the last good release
	// (the live one, or else the newest kept) into the new one, filling in
	// around what the checkout has there. Copied, never linked, so that a
	// build writing into them changes no other release; a failed build is
	// removed with its release, and the next build starts from the last
	// good one's. Needs Commands. Whatever Cache says, Commands also get
	// a cache home kept under Path/cache: XDG_CACHE_HOME, npm_config_cache
	// and HUGO_CACHEDIR point into it unless Env sets them.
	Cache []string

	// SSHKey and KnownHosts are files for ssh remotes. Git never prompts:
	// ssh runs in batch mode, so a missing key is an error, not a hang.
	SSHKey     string
	KnownHosts string

	// Token is an HTTPS token for private repositories. It reaches git only
	// when Remote is an https URL, then only for Remote's host, and only
	// through a credential helper's environment: never argv, never a file,
	// never a log line or an error. With an ssh or local Remote git never
	// sees it; an http:// Remote with a token is an error unless its host
	// is a loopback one (a forge on the same machine).
	Token string

	// TokenSource, when set, gives the token for each command that talks
	// to the remote, in place of Token (setting both is an error): for
	// tokens that expire, such as a GitHub App's installation tokens. What
	// it returns goes where Token goes, and only there.
	TokenSource TokenSource

	// Sandbox runs Commands under bubblewrap (bwrap), in a sandbox built
	// as an allow-list, never the host's / minus a list: read-only the
	// system's program and library folders (/usr, /bin, /lib...), /etc
	// less its secrets (shadow, sudoers, ssh host keys, TLS keys, Caddy's
	// config...), the toolchains that PATH names (a bin folder's parent,
	// such as /usr/local/go or nvm's node/vX, but never a home folder),
	// and the cache repository; writable only the new release, a per-site
	// home (Path/home, the commands' HOME), the cache home (Path/cache) and
	// a private /tmp. Nothing else of Path (its state, other releases, its
	// build logs), of other sites or of Caddy's storage is there, and the
	// files in Hide are masked wherever they are. When Caddy runs as root,
	// the commands run as the unprivileged user nobody (65534:65534) on the
	// host, with no capabilities, and the release, the home and the cache
	// home are theirs during the build (the release is given back to
	// Caddy's user after it, which clears setuid bits); when Caddy is not
	// root, they run as Caddy's user, and the host must allow unprivileged
	// user namespaces and, with a network, give Caddy's user /dev/net/tun
	// and a bwrap that is not setuid (docs/security.md). The commands get
	// PID, IPC and network namespaces of their own: they see no other
	// process, every process they start dies when the command ends or the
	// deploy is killed, and their network (see SandboxNetwork) never leads
	// to the host's loopback, so Caddy's admin endpoint is out of reach.
	// Their environment is only PATH, LANG, LANGUAGE, LC_*, TZ, HOME, Env
	// and DEPLOY_*. A deploy fails when bwrap (or, for the network, both
	// pasta and slirp4netns, or, as root, setpriv) is not installed or
	// cannot start. Linux only: elsewhere Validate refuses it.
	Sandbox bool

	// SandboxNetwork is the network of sandboxed commands: "" (the
	// default), outbound access as the host has it (builds fetch
	// packages) through pasta, or else slirp4netns, but no path to the
	// host's loopback; NetworkNone, no network at all, only a loopback of
	// their own.
	SandboxNetwork string

	// Hide names files and folders that sandboxed commands must not see,
	// such as those the webhook secret, the token and SSHKey are read
	// from. Each must be absolute; those that do not exist are skipped.
	// SSHKey is hidden whether it is listed or not.
	Hide []string

	// Poll, when positive, also wakes the deployer on this interval, to catch
	// deliveries that never came. Zero never polls; negative is an error.
	Poll time.Duration

	// Notify, when set, is called for events (a deploy started, succeeded,
	// failed or was interrupted; recovery found a live release) on the
	// worker goroutine, and after a rollback on the caller of Rollback. It
	// must not block.
	Notify func(Event)

	// Gate, when set, is asked whether the tip may go live before it is
	// built, each time a wake finds a tip that is not live (a build that
	// failed, or a rollback pin, is left alone first, as without a gate).
	// While it waits, or errs (it cannot tell), the tip is not deployed:
	// the worker asks again on every wake and on its own, 15 s after, then
	// doubling up to 5 min, for at most 2 h per tip. When it fails, the
	// tip is not deployed until a new commit, or a wake for ReasonChecks,
	// ReasonDelivery or ReasonManual asks again. Only the tip is ever
	// asked about, and deployed. Status.Checked says what it answered.
	Gate Gate

	// Cluster, when set, shares deploys with the other nodes of a group
	// (see Cluster); nil: this node alone.
	Cluster *Cluster

	// URL is the site's address, given to Commands as DEPLOY_URL (a
	// generator's base URL); empty: DEPLOY_URL is not set. A preview's
	// builds get the preview's own.
	URL string

	// Previews, when set, builds a preview of every open pull request
	// (see Previews); nil: none.
	Previews *Previews

	// Limits, when set, caps the CPU and memory of a deploy's commands
	// (see Limits): Validate refuses it where cgroup v2 cannot make the
	// caps, saying what is missing. nil: no caps beyond the idle class
	// that commands always run at.
	Limits *Limits
}

// withDefaults returns c with its zero values replaced by defaults.
func (c Config) withDefaults() Config {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Keep == 0 {
		c.Keep = DefaultKeep
	}
	c.Path = filepath.Clean(c.Path)
	return c
}

// Validate reports whether c can be deployed from, without touching the disk
// or the network.
func (c Config) Validate() error {
	if err := platformError(runtime.GOOS, c); err != nil {
		return err
	}
	if c.Path == "" {
		return errors.New("path is required")
	}
	if !filepath.IsAbs(c.Path) {
		return fmt.Errorf("path %q must be absolute", c.Path)
	}
	if c.Remote == "" {
		return errors.New("remote is required")
	}
	if strings.HasPrefix(c.Remote, "-") {
		return fmt.Errorf("remote %q must not start with '-'", RedactURL(c.Remote))
	}
	if RedactURL(c.Remote) != c.Remote {
		return errors.New("remote must not carry credentials; use token")
	}
	if c.Token != "" && c.TokenSource != nil {
		return errors.New("token and a token source are both set: give one")
	}
	if c.Token != "" || c.TokenSource != nil {
		// git sends the token only to an https remote's host; over http it
		// would cross the network in clear, but to a loopback host.
		if u, err := url.Parse(c.Remote); err == nil && strings.EqualFold(u.Scheme, "http") && !tokenScheme(u) {
			return fmt.Errorf("remote %q: token needs an https remote (or http to a loopback host)", c.Remote)
		}
	}
	if c.Branch != "" && (strings.HasPrefix(c.Branch, "-") || strings.ContainsAny(c.Branch, " ~^:?*[\\\x00") || strings.Contains(c.Branch, "..")) {
		return fmt.Errorf("branch %q is not a valid branch name", c.Branch)
	}
	if err := ValidatePublish(c.Publish); err != nil {
		return err
	}
	for i, argv := range c.Commands {
		if len(argv) == 0 || argv[0] == "" {
			return fmt.Errorf("command %d is empty", i+1)
		}
	}
	if err := c.validateCaches(); err != nil {
		return err
	}
	for _, kv := range c.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("env %q is not KEY=value", kv)
		}
	}
	if c.Timeout < 0 {
		return fmt.Errorf("timeout %s must be positive", c.Timeout)
	}
	if c.Poll < 0 {
		return fmt.Errorf("poll %s must be positive", c.Poll)
	}
	if c.Keep < 0 {
		return fmt.Errorf("keep %d must be at least 1", c.Keep)
	}
	if c.Depth < 0 {
		return fmt.Errorf("depth %d must be 0 (full history) or more", c.Depth)
	}
	if c.Cluster != nil {
		if err := c.Cluster.validate(); err != nil {
			return err
		}
	}
	if c.Limits != nil {
		if err := c.Limits.validate(); err != nil {
			return err
		}
		if err := limitsAvailable(c.Limits); err != nil {
			return err
		}
	}
	if c.SandboxNetwork != "" && c.SandboxNetwork != NetworkNone {
		return fmt.Errorf("sandbox network %q: want none, or nothing for outbound access", c.SandboxNetwork)
	}
	if c.Previews != nil {
		if err := c.Previews.validate(c); err != nil {
			return err
		}
	}
	for _, p := range c.Hide {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("hidden file %q must be absolute", p)
		}
	}
	return nil
}

// ValidatePublish reports whether publish is a relative path that stays
// inside the release. Symlinks are checked again after the build.
func ValidatePublish(publish string) error {
	if publish == "" {
		return nil
	}
	if filepath.IsAbs(publish) {
		return fmt.Errorf("publish %q must be relative to the release", publish)
	}
	clean := filepath.Clean(publish)
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return fmt.Errorf("publish %q climbs out of the release", publish)
	}
	return nil
}
