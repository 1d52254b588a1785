package caddywebhook

import (
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-webhooks/caddy-github-webhook/delivery"
	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/githubapi"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/notify"
)

func init() {
	caddy.RegisterModule(new(Handler))
}

// DefaultMaxBody is the largest delivery accepted when max_body is not set.
// GitHub caps deliveries at 25 MB.
const DefaultMaxBody = 25 << 20

// minSecretLen is the shortest secret loaded without a warning.
const minSecretLen = 16

// Handler receives GitHub's webhook deliveries for one repository, verifies
// their signature, and wakes the deployer that keeps path/current up to date
// with a branch of that repository. It answers every request that reaches
// it and never calls the next handler: give it a matcher (such as a path)
// so it sees only deliveries.
//
// The deploy itself runs in the background; a delivery is answered before any
// git work starts. One deployer runs per path, whatever Caddy reloads: a
// reload keeps it (and any deploy in progress) and applies the new settings
// from the next deploy on.
type Handler struct {
	// The GitHub repository, as owner/name. Push deliveries for any other
	// repository (compared case-insensitively) are skipped. Required.
	Repo string `json:"repo,omitempty"`

	// The webhook secrets. A delivery is accepted when its
	// X-Hub-Signature-256 matches any one of them, which lets you rotate a
	// secret without missing deliveries; with forge, when it is signed as
	// that forge signs (for GitLab: its secret token, or its signing token,
	// the whsec_... value). Use a placeholder such as
	// {env.GITHUB_WEBHOOK_SECRET} or {file./etc/caddy/webhook-secret}: it
	// is resolved when the configuration is loaded, so the secret itself
	// never appears in the JSON configuration, the admin API or autosave,
	// and a variable read through {env.*} is removed from the environment
	// of the build commands. Each is trimmed of surrounding white space
	// when loaded; a blank one is a configuration error, and one shorter
	// than 16 characters loads with a warning. Required.
	Secret []string `json:"secret,omitempty"`

	// The folder the deployer owns: releases, the cache repository and its
	// state live under it. Serve <path>/current. A relative path is taken
	// from Caddy's working directory. Required.
	Path string `json:"path,omitempty"`

	// The branch that is deployed. Default: the remote's default branch
	// (its HEAD). Until the deployer has resolved it, pushes are compared
	// with the default branch that the (signed) delivery names.
	Branch string `json:"branch,omitempty"`

	// Where to fetch from: an https or ssh URL, a local path or a file://
	// URL. It must not carry credentials: use token. Default:
	// https://github.com/<repo>.git, or <forge_url>/<repo>.git.
	Remote string `json:"remote,omitempty"`

	// The build commands, run in order inside the new release, each as an
	// argv list: never through a shell (make the first element "sh" and
	// write the script after "-c" if you want one). Their environment is
	// Caddy's (without the variables secret and token read), plus env, plus
	// DEPLOY_COMMIT, DEPLOY_BRANCH, DEPLOY_REPO and DEPLOY_RELEASE, and
	// DEPLOY_URL: the URL of deployments when it names one (a preview's
	// builds: the preview's, and DEPLOY_PR its number). They run in
	// the idle scheduling and I/O classes at nice 10 on Linux, at nice 10
	// elsewhere. Default: none, the checkout itself is the site.
	Command [][]string `json:"command,omitempty"`

	// The part of the release that goes live, such as "public", "_site" or
	// "dist". It must stay inside the release, symlinks resolved. Default:
	// the release root.
	Publish string `json:"publish,omitempty"`

	// Extra environment variables for the commands. Values are used as
	// written; placeholders are not replaced.
	Env map[string]string `json:"env,omitempty"`

	// How long one deploy may take, fetch and build together; past it the
	// build's whole process group is killed. Default (unset or 0): 10m.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// How many releases stay on disk for rollback, the live one included.
	// Default (unset or 0): 3.
	Keep int `json:"keep,omitempty"`

	// The fetch depth: 0 fetches the full history, for builds that read it
	// (such as "last modified" dates). Default (unset): 1.
	Depth *int `json:"depth,omitempty"`

	// Also check out submodules, recursively.
	Submodules bool `json:"submodules,omitempty"`

	// A private key file for ssh remotes. Default: the user's ssh setup.
	// Git never prompts: a key that does not work fails the fetch.
	SSHKey string `json:"ssh_key,omitempty"`

	// A known_hosts file for ssh remotes. Default: the user's ssh setup.
	KnownHosts string `json:"known_hosts,omitempty"`

	// An HTTPS token for a private repository. Placeholders are resolved as
	// for secret, so write {env.GITHUB_TOKEN} rather than the token. It never
	// appears in command lines, logs, URLs on disk or errors, and git gives
	// it only to the remote's host.
	Token string `json:"token,omitempty"`

	// GitHub App credentials instead of token: git over https and GitHub's
	// API then use the app's installation tokens, each limited to repo,
	// asked for with a JWT signed by the app's key, renewed 5 minutes
	// before they expire (GitHub's live an hour) and kept in memory only,
	// never on disk, in logs or in errors. Needs the app installed on the
	// repository, with the permissions of what is asked of it (see
	// docs/github.md). Not with token.
	App *GitHubApp `json:"app,omitempty"`

	// Also check the remote on this interval, to catch deliveries that never
	// came (GitHub does not retry a failed delivery). Default: off.
	Poll caddy.Duration `json:"poll,omitempty"`

	// Report deploys to GitHub as deployments in an environment, so that
	// the repository's page shows what is live, its link and its history.
	// Each deploy that builds a commit creates a deployment of that commit,
	// in_progress while it builds, then success (with the environment's
	// URL, sent only once the release is live) or failure (a one-line
	// reason, never the build's output). A rollback through the admin API
	// creates a deployment of the commit rolled back to, with success; a
	// deploy cut short by Caddy stopping reports error. Reports never
	// delay or fail a deploy: they are queued, retried with backoff
	// (honouring GitHub's rate limits) and given up after ten attempts or
	// an hour. Needs token (or app), with the Deployments permission (read and
	// write). Default: off.
	Deployments *Deployments `json:"deployments,omitempty"`

	// Deploy a tip only once its checks passed on GitHub: check runs (the
	// jobs of GitHub Actions and other CI apps), workflow runs and commit
	// statuses. With names, each must be the name of a check run, a
	// workflow or a status context of the commit, and have succeeded; a
	// name may pin its source as branch protection does: "CI@app/<slug>"
	// (check runs of that app only), "CI@.github/workflows/ci.yml" (runs
	// of that workflow file only). Without names, every check suite that
	// GitHub created at push time must have completed and passed, and
	// every check and status too, at least one. success, neutral and
	// skipped pass. While one is
	// pending, the tip waits (the admin API's status says which check):
	// the deployer looks again on each check_run, check_suite,
	// workflow_run or status delivery for the deployed branch, on poll,
	// and on its own backoff (15 s doubling to 5 min, for at most 2 hours).
	// A tip whose check failed is not deployed; a new commit, a delivery
	// of a check that completed, a redelivery of the push or a manual
	// deploy looks again. Only the tip is ever deployed. When GitHub's API
	// cannot be read, the tip waits too: nothing goes live unchecked. A
	// private repository needs token, with the Checks (or, for a
	// fine-grained token, which cannot have it, name the workflows or
	// status contexts), Actions and Commit statuses permissions (read).
	// Default: off.
	RequireChecks *RequireChecks `json:"require_checks,omitempty"`

	// The base URL of GitHub's REST API, for deployments and
	// require_checks. GitHub Enterprise Server serves it at
	// https://HOST/api/v3. It must not carry credentials, and must be
	// https when token is set (http only to a loopback address).
	// Default: https://api.github.com.
	APIURL string `json:"api_url,omitempty"`

	// The forge the repository lives on, which decides how deliveries are
	// verified and read, the default remote, and the API that deployments
	// and require_checks talk to: "github" (github.com, or GitHub
	// Enterprise Server with forge_url), "gitea", "forgejo", "gitlab" or
	// "bitbucket" (Bitbucket Cloud). Each forge's deliveries are checked as
	// it signs them: X-Hub-Signature-256 (GitHub), X-Gitea-Signature or
	// X-Forgejo-Signature (Gitea, Forgejo), X-Gitlab-Token or GitLab's
	// signing token (a secret starting with whsec_), X-Hub-Signature with
	// sha256= (Bitbucket). Default: github.
	Forge string `json:"forge,omitempty"`

	// The forge's base URL, such as https://git.example.com or
	// https://example.com/gitlab. The default remote is
	// <forge_url>/<repo>.git, and the forge's API lives under it: /api/v1
	// for Gitea and Forgejo, /api/v4 for GitLab, /api/v3 for GitHub
	// Enterprise Server (api_url overrides). With token, it must be https,
	// or http to a loopback host (a forge on the same machine as Caddy);
	// the same holds for remote and api_url. Default: https://github.com,
	// https://gitlab.com or https://bitbucket.org; Gitea and Forgejo have
	// none, so it is required for them unless remote is set and neither
	// deployments nor require_checks is.
	ForgeURL string `json:"forge_url,omitempty"`

	// Folders of the release that keep a build's work for the next build,
	// relative to the release: Hugo's "resources/_gen", "node_modules",
	// ".jekyll-cache". Before the commands run, each is copied from the
	// last good release (the live one, or else the newest kept) into the
	// new release; files that the commit itself has there win. A copy, not links: what a build
	// writes never changes another release, and a failed build is
	// discarded with its release, so the next build starts from the last
	// good one's folders. Symlinks are copied as symlinks, never
	// followed; a folder that is a symlink is not carried. Copying costs
	// time for folders of many files (node_modules): see the README. Each
	// must stay inside the release, with no ".." and no ".git"; needs
	// command. Whether or not cache is set, the commands also get a cache
	// home kept across deploys under <path>/cache: XDG_CACHE_HOME,
	// npm_config_cache and HUGO_CACHEDIR point into it, unless env sets
	// them. Default: none.
	Cache []string `json:"cache,omitempty"`

	// Run the commands in a bubblewrap sandbox (the bwrap program, package
	// "bubblewrap" on Debian and Ubuntu), so that a build (code that the
	// repository controls) cannot reach past its release. In it, the file
	// system is read-only but for the new release, a home folder kept
	// across deploys (<path>/home, the commands' HOME), the build cache
	// home (<path>/cache) and a private /tmp;
	// path's state, other releases and build logs are not there and its
	// cache repository is read-only; the files that the {file.*}
	// placeholders of secret and token read, ssh_key, and Caddy's default
	// data and configuration folders (certificates and their keys,
	// autosave; not a storage configured elsewhere) are hidden; the
	// commands see no other process, and every process they start dies
	// when the command ends or the deploy is killed, even one that calls
	// setsid; their environment is only PATH, LANG, LANGUAGE,
	// LC_*, TZ, HOME, env and DEPLOY_* (none of Caddy's other variables).
	// The sandbox is an allow-list: the system's program and library
	// folders, /etc less its secrets and the toolchains that PATH names,
	// read-only; nothing of other sites or of a storage folder. When Caddy
	// runs as root, the commands run as the unprivileged user nobody. Their
	// network is their own (see sandbox_network): never the host's
	// loopback, so Caddy's admin endpoint is out of reach. A deploy fails
	// with a clear error when bwrap (or, for the network, slirp4netns and
	// pasta from the passt package both) is missing or cannot start.
	// Linux only: on other systems the configuration is refused.
	// Default: off: the commands run as Caddy's user, with Caddy's
	// environment less the variables secret and token read.
	Sandbox bool `json:"sandbox,omitempty"`

	// The network of sandboxed commands: "outbound", access to what the
	// host reaches (builds download packages) through slirp4netns, or else
	// pasta, but not to the host's own loopback; "none", no network
	// at all. Default: outbound.
	SandboxNetwork string `json:"sandbox_network,omitempty"`

	// The largest delivery accepted, in bytes. A larger declared
	// Content-Length is answered 413 before any of the body is read, and a
	// body that turns out larger as it arrives is answered 413 then.
	// Default: 25 MiB (GitHub caps deliveries at 25 MB).
	//
	// A body is never held in memory, whatever its size: it is verified and
	// decoded as it streams through a buffer of 8 KiB, keeping only the few
	// fields a decision needs (each at most 1 KiB). Every body being read
	// takes one of 1024 slots shared by all github_webhook handlers of the
	// process, so bodies hold at most about 18 MiB in all however many
	// clients send them. The slots are shared fairly between client
	// addresses (an IPv6 address with its /64; every stream of an HTTP/2
	// connection counts against its address): a request that finds none
	// free takes, from the address holding the most, the slot of a body
	// that has been read for a quarter of a second, if that address holds
	// two more than its own; else it waits for one, 5 to 10 seconds, and
	// is answered 503 if none came. So slow clients, however many, from
	// fewer addresses than slots, never keep a delivery from GitHub waiting
	// more than a quarter of a second. A request without a well-formed
	// X-Hub-Signature-256 header is answered 401 before its body is read.
	// Reading a body may take 10 seconds (GitHub itself gives up after 10),
	// unless the server sets its own read_body timeout; a slower one is
	// answered 408.
	MaxBody int64 `json:"max_body,omitempty"`

	// Share deploys with the other nodes whose Caddy uses the same storage
	// (the global storage option: file_system on a shared folder, or a
	// storage module such as Redis, Consul, S3 or PostgreSQL) and names
	// the same group here. Whichever node is woken (a delivery, poll, the
	// admin API) takes the group's build lock in storage, builds once,
	// and stores the published tree as one archive (tar, zstd) with its
	// SHA-256, then the group's live record; every node reads that record
	// every 150 ms while another node holds the build lease (one read of
	// the lease every 2 seconds otherwise), checks the archive's digest, unpacks it into its
	// own releases/ under the same name and switches current, so all
	// nodes serve the same bytes. A rollback through any node moves the
	// group. Each node records what it serves; the admin API shows every
	// node of the group and whether it has converged. The nodes must
	// deploy the same repository, branch, commands and publish folder. A
	// storage outage leaves every node serving what it has, retrying and
	// saying so in its status and metrics. The name is 1 to 64 letters,
	// digits, '.', '_' or '-'. Default: off, this node deploys alone.
	Cluster string `json:"cluster,omitempty"`

	// How often a node reads its group's storage while no other node
	// builds (needs cluster): one read of the build lease, which says
	// whether the live record moved (a rollback, a build shorter than
	// this). While another node holds the lease, the live record is read
	// every 150 ms, so a follower goes live a fraction of a second after
	// the builder, plus the time to fetch and unpack the archive. Shorter
	// notices short builds and rollbacks sooner at the cost of more
	// storage reads. Default (unset or 0): 2s.
	ClusterPoll caddy.Duration `json:"cluster_poll,omitempty"`

	// Where deploy results are pushed: a signed JSON webhook, Slack,
	// Discord or ntfy, each with the results it wants (default: a failure,
	// and the deploy that recovers from it). Messages are queued (64 per
	// destination; past that the oldest is dropped) and sent in the
	// background, retried with backoff (1 s doubling, ten attempts) on a
	// network error, 408, 429 or 5xx: a deploy never waits for them. They
	// carry the path, repository, branch, commit, release, reason,
	// duration and a one-line error, never the build's output. Counted in
	// caddy_github_webhook_notifications_total. Default: none.
	Notify []*Notify `json:"notify,omitempty"`

	// Build a preview of every open pull request against the deployed
	// branch, at its own host, with the site's commands; removed when
	// the pull request closes (see docs/previews.md). The handler then
	// also takes pull_request deliveries (the webhook's "Pull requests"
	// event). With token, previews are reported on GitHub (a transient
	// environment pr-<number> with deployments, a commit status, one
	// comment per pull request), and previews of pull requests that are
	// no longer open are removed at start and every hour. Default: off.
	Previews *Previews `json:"previews,omitempty"`

	// Caps on the CPU and memory of the build's commands (see Limits).
	// Default: none; commands and git run at the idle scheduling class
	// and I/O class on Linux, nice 10 elsewhere.
	Limits *Limits `json:"limits,omitempty"`

	logger  *zap.Logger
	forge   delivery.Forge  // verifies and reads deliveries
	idKey   string          // forge.IDHeader(), canonical
	cfg     deployer.Config // what the deployer gets, placeholders resolved
	maxBody int64

	key     string          // the cleaned absolute path: the key in targets
	owner   <-chan struct{} // identifies the configuration holding this handler
	target  *target         // shared with other configurations naming the path
	pooled  bool            // a reference to key in targets is held
	holding bool            // this handler is registered in target.holders

	metrics *metrics // this configuration's collectors; nil in unit tests

	// bodies is the budget that bodies being read count against: the
	// process's one, unless the module's constructor gave another.
	bodies *bodyBudget

	notifier *notify.Notifier // nil without notify

	github   apiClient      // the forge's API: nil without deployments and require_checks
	reporter deployReporter // nil without deployments
	checks   bool           // require_checks is on: check deliveries wake

	appTokens *githubapi.AppTokens // nil without app

	previewReporter *githubapi.PreviewReporter // nil without previews and token
	previewClient   *githubapi.Client          // previews' own client, when h.github is nil
	// pullRequest is the deployer's PullRequest; nil without previews.
	pullRequest func(deployer.PullRequest) deployer.PreviewAnswer

	wake   func(deployer.Reason) // the deployer's Wake; tests swap it
	branch func() string         // the deployer's Branch; tests swap it
}

// CaddyModule returns the Caddy module information. Its receiver is a
// pointer: Caddy's events call it on the module of their context from the
// deployer's goroutine, and a value receiver would copy the whole Handler,
// racing with Cleanup's writes.
func (*Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.github_webhook",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision fills in defaults, resolves placeholders in secret and token,
// warns about what loads but will not work as meant (see warnAtLoad), and
// attaches the handler to the deployer of its path, starting one if no
// loaded configuration has it yet. Starting a deployer does no git work.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.bodies == nil {
		h.bodies = bodies
	}
	if h.MaxBody == 0 {
		h.maxBody = DefaultMaxBody
	} else {
		h.maxBody = h.MaxBody
	}

	repl := caddy.NewReplacer()
	secrets := make([][]byte, 0, len(h.Secret))
	for i, s := range h.Secret {
		v, err := resolve(repl, s)
		if err != nil {
			return fmt.Errorf("secret %d: %w", i+1, err)
		}
		// A file or variable often ends with a newline that is not part
		// of the secret GitHub was given.
		v = strings.TrimSpace(v)
		name := fmt.Sprintf("secret %d", i+1)
		if isPlaceholder(s) {
			name += " " + s
		}
		if v == "" {
			return fmt.Errorf("%s: holds only white space", name)
		}
		if len(v) < minSecretLen {
			h.logger.Warn("webhook secret is short: anyone who guesses it can trigger deploys; use at least 16 random characters",
				zap.String("secret", name))
		}
		secrets = append(secrets, []byte(v))
	}
	forge, err := newForge(h.forgeKind(), secrets)
	if err != nil {
		return err
	}
	h.setForge(forge)
	token := ""
	if h.Token != "" {
		var err error
		if token, err = resolve(repl, h.Token); err != nil {
			return fmt.Errorf("token: %w", err)
		}
	}

	if h.Path != "" {
		abs, err := filepath.Abs(h.Path)
		if err != nil {
			return fmt.Errorf("path: %w", err)
		}
		h.key = abs
	}
	h.cfg = h.deployerConfig(token)
	if err := h.provisionCluster(ctx); err != nil {
		return err
	}
	if err := h.provisionApp(); err != nil {
		return err
	}
	// Build commands do not get the variables the secret and token come from.
	h.cfg.Unset = envPlaceholders(append(slices.Clone(h.Secret), h.Token)...)

	// An invalid configuration never takes the folder.
	if err := h.Validate(); err != nil {
		return err
	}
	h.warnAtLoad()

	// Deploys of this configuration count in its metrics registry and emit
	// its Caddy events; a reload hands the deployer the new ones.
	m, err := newMetrics(ctx.GetMetricsRegistry())
	if err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	h.metrics = m
	obs := &observer{ctx: ctx, path: h.key, metrics: m}
	if app, err := ctx.App("events"); err != nil {
		h.logger.Warn("deploy events are off: loading the events app", zap.Error(err))
	} else if events, ok := app.(*caddyevents.App); ok {
		obs.events = events
	}
	h.cfg.Notify = obs.notify
	if err := h.provisionGitHub(token, obs); err != nil {
		return fmt.Errorf("%s api: %w", h.forgeKind(), err)
	}
	if err := h.provisionNotify(repl, ctx.GetMetricsRegistry(), obs); err != nil {
		return err
	}
	h.checks = h.RequireChecks != nil
	if err := h.provisionPreviews(ctx, token); err != nil {
		return err
	}

	val, loaded, err := targets.LoadOrNew(h.key, func() (caddy.Destructor, error) {
		d, err := deployer.New(h.cfg, h.logger)
		if err != nil {
			return nil, err
		}
		return &target{d: d}, nil
	})
	if err != nil {
		return fmt.Errorf("starting the deployer of %s: %w", h.key, err)
	}
	h.pooled = true
	h.target = val.(*target)
	h.owner = ctx.Done()
	if err := h.target.hold(h.owner, h.cfg, h.logger, h.forgeWeb(), loaded); err != nil {
		return err
	}
	h.holding = true
	h.wake = h.target.d.Wake
	h.branch = h.target.d.Branch
	if h.Previews != nil {
		h.pullRequest = h.target.d.PullRequest
	}
	m.restore(h.key, h.target.d.Status())
	startFailing(h.key, loaded, h.target.d.Status())
	if h.Cluster != "" {
		m.cluster.add(h.key, h.target.d.Status)
	}

	// The deployer starts when Caddy runs this configuration, not when it
	// only validates it.
	app, err := ctx.App("github_webhook")
	if err != nil {
		return fmt.Errorf("loading the github_webhook app: %w", err)
	}
	app.(*App).add(h.target, h.reporter)
	return nil
}

// deployerConfig returns the deployer's view of h, with token as resolved.
func (h *Handler) deployerConfig(token string) deployer.Config {
	cfg := deployer.Config{
		Path:       h.key,
		Remote:     h.Remote,
		Repo:       h.Repo,
		Branch:     h.Branch,
		Commands:   h.Command,
		Publish:    h.Publish,
		Timeout:    time.Duration(h.Timeout),
		Keep:       h.Keep,
		Submodules: h.Submodules,
		Cache:      h.Cache,
		SSHKey:     h.SSHKey,
		KnownHosts: h.KnownHosts,
		Token:      token,
		Poll:       time.Duration(h.Poll),
		Sandbox:    h.Sandbox,
		// "outbound" is the deployer's default, ""; it refuses any other
		// value but "none".
		SandboxNetwork: strings.TrimPrefix(h.SandboxNetwork, "outbound"),
		Hide:           sandboxHidden(append(slices.Clone(h.Secret), h.Token)...),
		URL:            h.siteURL(),
		Previews:       h.previewsConfig(),
		Limits:         h.Limits.deployer(),
	}
	if cfg.Remote == "" {
		cfg.Remote = h.defaultRemote()
	}
	cfg.Depth = deployer.DefaultDepth
	if h.Depth != nil {
		cfg.Depth = *h.Depth // 0 is the full history, here as in the deployer
	}
	keys := make([]string, 0, len(h.Env))
	for k := range h.Env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		cfg.Env = append(cfg.Env, k+"="+h.Env[k])
	}
	return cfg
}

// Validate reports whether the handler's configuration is complete and
// consistent. It touches neither the disk nor the network.
func (h *Handler) Validate() error {
	if h.Repo == "" {
		return errors.New("repo is required")
	}
	if owner, name, ok := strings.Cut(h.Repo, "/"); !ok || owner == "" || name == "" ||
		strings.ContainsAny(name, "/ \t") || strings.ContainsAny(owner, " \t") {
		return fmt.Errorf("repo %q is not owner/name", h.Repo)
	}
	if len(h.Secret) == 0 {
		return errors.New("secret is required")
	}
	if h.Path == "" {
		return errors.New("path is required")
	}
	if h.MaxBody < 0 {
		return fmt.Errorf("max_body %d must be positive", h.MaxBody)
	}
	for k := range h.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("env name %q is not valid", k)
		}
	}
	if err := h.validateForge(); err != nil {
		return err
	}
	if err := h.validateGitHub(); err != nil {
		return err
	}
	// The deployer's settings (timeout, poll, keep, depth, publish, ...)
	// have one validation: the deployer's.
	if err := h.cfg.Validate(); err != nil {
		return err
	}
	return nil
}

// Cleanup detaches the handler from its deployer. The deployer stops when
// no loaded configuration names its path any more. Then the deployment
// reports of this configuration still queued (such as the error status of
// a deploy that stopping the deployer cut short) are sent, for a few
// seconds at most. It tolerates a Provision that failed half-way.
func (h *Handler) Cleanup() error {
	if h.holding {
		h.target.release(h.owner)
		h.holding = false
	}
	var err error
	if h.pooled {
		h.pooled = false
		if _, derr := targets.Delete(h.key); derr != nil {
			err = fmt.Errorf("stopping the deployer of %s: %w", h.key, derr)
		}
	}
	h.closeGitHub()
	h.closeNotify()
	h.closePreviews()
	return err
}

// ServeHTTP answers a delivery. It never calls next.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	a := h.handle(w, r)
	a.write(w)
	if h.metrics != nil {
		h.metrics.delivery(h.key, a)
	}
	if ce := h.logger.Check(zap.InfoLevel, "delivery"); ce != nil {
		ce.Write(
			zap.String("delivery", a.Delivery),
			zap.String("event", a.event),
			zap.String("result", a.Result),
			zap.Int("status", a.status),
			zap.String("reason", a.reason()),
		)
	}
	return nil
}

// envPlaceholder matches an {env.NAME} placeholder.
var envPlaceholder = regexp.MustCompile(`\{env\.([^{}]+)\}`)

// envPlaceholders returns the names of the environment variables that the
// {env.*} placeholders of values read.
func envPlaceholders(values ...string) []string {
	var names []string
	for _, v := range values {
		for _, m := range envPlaceholder.FindAllStringSubmatch(v, -1) {
			if !slices.Contains(names, m[1]) {
				names = append(names, m[1])
			}
		}
	}
	return names
}

// filePlaceholder matches a {file.PATH} placeholder.
var filePlaceholder = regexp.MustCompile(`\{file\.([^{}]+)\}`)

// sandboxHidden returns what a sandboxed build must not see: the files that
// the {file.*} placeholders of values read, and Caddy's data and
// configuration folders, which hold certificates, their private keys and
// the autosaved configuration. Paths are absolute, taken from Caddy's
// working directory as Caddy takes them.
func sandboxHidden(values ...string) []string {
	var paths []string
	add := func(p string) {
		if abs, err := filepath.Abs(p); err == nil && !slices.Contains(paths, abs) {
			paths = append(paths, abs)
		}
	}
	for _, v := range values {
		for _, m := range filePlaceholder.FindAllStringSubmatch(v, -1) {
			add(m[1])
		}
	}
	add(caddy.AppDataDir())
	add(caddy.AppConfigDir())
	return paths
}

// resolve replaces the {env.*} and {file.*} placeholders in s. Its errors
// never quote s, which may hold a literal secret; they name the placeholder
// only when s is nothing but one.
func resolve(repl *caddy.Replacer, s string) (string, error) {
	if s == "" {
		return "", errors.New("is empty")
	}
	v, err := repl.ReplaceOrErr(s, true, true)
	if err == nil {
		return v, nil
	}
	if isPlaceholder(s) {
		return "", fmt.Errorf("placeholder %s is unknown or empty", s)
	}
	return "", errors.New("a placeholder in it is unknown or empty")
}

// isPlaceholder reports whether s is one placeholder and nothing else, and
// so names where a value comes from rather than being it.
func isPlaceholder(s string) bool {
	return strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") && strings.Count(s, "{") == 1
}

// Interface guards
var (
	_ caddy.Module                = (*Handler)(nil)
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
)
