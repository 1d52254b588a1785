package deployer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// credentialHelper is a constant shell snippet, not built from any input: git
// runs it for "get", and it answers with the token that it reads, one line,
// from descriptor 3, where runRemote hands it a socket (see credentialFeed).
// The token is thus in no argv, no environment and no file. Without it (a
// git that is not runRemote's) the helper answers nothing and says why: git
// then fails to authenticate, and never prompts (GIT_TERMINAL_PROMPT=0).
// read and printf are built into sh: no process gets the token in argv.
const credentialHelper = `!f() { test "$1" = get || exit 0; IFS= read -r t <&3 && test -n "$t" || { echo >&2 "caddy-github-webhook: no token for git on descriptor 3"; exit 1; }; echo username=x-access-token; printf 'password=%s\n' "$t"; }; f`

// git runs the git commands of one target. Every git command of the package
// is meant to pass through run, or runRemote when it talks to the remote,
// with an explicit directory and environment, its output captured, and
// errors that name the command and never the token. Long-lived ones (the
// deployer's cat-file) start through start, and never get the token.
type git struct {
	cacheDir   string // the cache repository (bare)
	remote     string
	token      string
	tokens     TokenSource // when set, asked for each command instead of token
	sshKey     string
	knownHosts string
	// unset names variables of the process's environment that git does
	// not get, as Config.Unset does for the build: the webhook's secret,
	// the token.
	unset []string
	// cleanConfig is the content of the cache repository's config that
	// cleanCache found clean last: the same bytes need no git to check.
	cleanConfig []byte

	mu     sync.Mutex
	handed []string // what tokens handed out, scrubbed from messages
}

// keptGitEnv names the only GIT_* variables of the process's environment that
// reach git: they choose how TLS and slow transfers are handled, never what
// runs, which repository is read, or which configuration applies.
var keptGitEnv = map[string]bool{
	"GIT_SSL_CAINFO": true, "GIT_SSL_CAPATH": true, "GIT_SSL_NO_VERIFY": true,
	"GIT_HTTP_LOW_SPEED_LIMIT": true, "GIT_HTTP_LOW_SPEED_TIME": true, "GIT_HTTP_USER_AGENT": true,
}

// fixedGitConfig is configuration that every git command runs with. Given as
// GIT_CONFIG_KEY_n/GIT_CONFIG_VALUE_n, it overrides the cache repository's
// own config (which a build without sandbox can write), and the system's
// and the user's configuration are not read at all: git runs nothing that
// this package did not choose.
var fixedGitConfig = [][2]string{
	// An empty helper resets the helpers of every config file read before.
	{"credential.helper", ""},
	// Worktrees of the cache are created and pruned by us only.
	{"gc.auto", "0"},
	{"maintenance.auto", "false"},
	// No hook runs: a hook written into the cache repository (by a build, or
	// by an older version's fast path) would run on every later fetch.
	{"core.hooksPath", os.DevNull},
	{"core.fsmonitor", "false"},
	// GIT_PROXY_COMMAND, set in env, wins over core.gitProxy, and
	// GIT_SSH_COMMAND over core.sshCommand, which env sets too.
	{"core.attributesFile", os.DevNull},
	{"core.protectNTFS", "true"},
	{"core.protectHFS", "true"},
	// Transports: never ext:: (runs a command) nor remote helpers; local
	// paths only when given directly (the remote), not by a submodule,
	// unless the caller allows it for one command with -c.
	{"protocol.allow", "never"},
	{"protocol.https.allow", "always"},
	{"protocol.http.allow", "always"},
	{"protocol.ssh.allow", "always"},
	{"protocol.git.allow", "always"},
	{"protocol.file.allow", "user"},
	// Objects are checked as they arrive: a tree with a "..", ".git" or
	// "a/b" entry is refused at fetch. Historical mistakes in commit
	// headers and file modes, common in old repositories and harmless
	// here, stay warnings.
	{"fetch.fsckObjects", "true"},
	{"transfer.fsckObjects", "true"},
	{"fetch.fsck.zeroPaddedFilemode", "warn"},
	{"fetch.fsck.badTimezone", "warn"},
	{"fetch.fsck.missingSpaceBeforeDate", "warn"},
	{"fetch.fsck.zeroPaddedDate", "warn"},
	{"fetch.fsck.badDate", "warn"},
	{"fetch.fsck.badDateOverflow", "warn"},
	{"fetch.fsck.badEmail", "warn"},
	{"fetch.fsck.missingEmail", "warn"},
	{"fetch.fsck.missingNameBeforeEmail", "warn"},
	{"fetch.fsck.missingSpaceBeforeEmail", "warn"},
}

// env returns the environment of a git process: the process's own, minus
// the variables that unset names, every GIT_* variable but keptGitEnv's and
// anything that would make git prompt, plus fixedGitConfig and extra, more
// configuration. It never holds the token.
func (g *git) env(extra ...[2]string) []string {
	env := make([]string, 0, len(os.Environ())+2*len(fixedGitConfig)+12)
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if (strings.HasPrefix(k, "GIT_") && !keptGitEnv[k]) || k == "SSH_ASKPASS" || slices.Contains(g.unset, k) {
			continue
		}
		env = append(env, kv)
	}
	env = append(env,
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL="+os.DevNull,
		"GIT_TERMINAL_PROMPT=0",
		"GIT_ASKPASS=true", // answers every prompt with nothing: never a hang
		"GIT_SSH_COMMAND="+g.sshCommand(),
		"GIT_PROXY_COMMAND=", // set, so that core.gitProxy is not read; empty, so none runs
	)
	config := append(slices.Clip(fixedGitConfig), [2]string{"core.sshCommand", g.sshCommand()})
	config = append(config, extra...)
	env = append(env, "GIT_CONFIG_COUNT="+strconv.Itoa(len(config)))
	for i, kv := range config {
		env = append(env, "GIT_CONFIG_KEY_"+strconv.Itoa(i)+"="+kv[0], "GIT_CONFIG_VALUE_"+strconv.Itoa(i)+"="+kv[1])
	}
	return env
}

// helperKey returns the config key of the credential helper, scoped to the
// remote's host, and whether git gets the token at all: only with a token
// (or a TokenSource) and an https remote. With any other remote, git never
// sees the token.
func (g *git) helperKey() (string, bool) {
	if g.token == "" && g.tokens == nil {
		return "", false
	}
	u, err := url.Parse(g.remote)
	if err != nil || !tokenScheme(u) || u.Host == "" {
		return "", false
	}
	return "credential." + strings.ToLower(u.Scheme) + "://" + u.Host + ".helper", true
}

// isLocalRemote reports whether remote is a path or a file:// URL.
func isLocalRemote(remote string) bool {
	if strings.HasPrefix(remote, "file://") || strings.HasPrefix(remote, "/") || strings.HasPrefix(remote, ".") {
		return true
	}
	return !strings.Contains(remote, "://") && !strings.Contains(remote, ":")
}

// sshCommand is the ssh that git runs for ssh remotes: batch mode, so a
// missing key or unknown host is an error and never a prompt.
func (g *git) sshCommand() string {
	args := []string{"ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=30"}
	if g.sshKey != "" {
		args = append(args, "-i", shellQuote(g.sshKey), "-o", "IdentitiesOnly=yes")
	}
	if g.knownHosts != "" {
		args = append(args, "-o", shellQuote("UserKnownHostsFile="+g.knownHosts), "-o", "StrictHostKeyChecking=yes")
	}
	return strings.Join(args, " ")
}

// shellQuote quotes s for the shell that git runs GIT_SSH_COMMAND through.
// The values are file names from the configuration, never payload data.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// run runs git with args in dir and returns its standard output. The
// command does not talk to the remote: it never gets the token (runRemote).
func (g *git) run(ctx context.Context, dir string, args ...string) (string, error) {
	return g.exec(ctx, dir, g.env(), nil, args)
}

// runRemote runs git with args in dir as run does, for a command that talks
// to the remote (fetch, ls-remote, submodule update): when git gets the
// token at all (helperKey), it gets it here, and only here (a TokenSource
// is asked for it here, and told when the command failed), through
// credentialHelper (see remoteConfig) and a socket on descriptor 3 that this
// process and the children that git starts inherit (see credentialFeed).
func (g *git) runRemote(ctx context.Context, dir string, args ...string) (string, error) {
	config := g.remoteConfig()
	if config == nil {
		return g.run(ctx, dir, args...)
	}
	token, err := g.tokenForCommand(ctx)
	if err != nil {
		return "", fmt.Errorf("git %s: %w", args[0], err)
	}
	feed, err := newCredentialFeed(token)
	if err != nil {
		return "", fmt.Errorf("git %s: %w", args[0], err)
	}
	defer feed.close()
	out, err := g.exec(ctx, dir, g.env(config...), []*os.File{feed.theirs}, args)
	if err != nil && g.tokens != nil {
		g.tokens.Failed(token)
	}
	return out, err
}

// remoteConfig is the configuration that runRemote adds when git gets the
// token, nil when it does not (see helperKey).
func (g *git) remoteConfig() [][2]string {
	key, ok := g.helperKey()
	if !ok {
		return nil
	}
	return [][2]string{
		// The token goes to the remote's host only, never to another host
		// that asks (a submodule's, a redirect's).
		{key, credentialHelper},
		// One fetch at a time: two helpers reading the socket at once
		// could share a line between them.
		{"submodule.fetchJobs", "1"},
		{"fetch.parallel", "1"},
	}
}

// exec runs git with args in dir, with env and files (see runFiles).
func (g *git) exec(ctx context.Context, dir string, env []string, files []*os.File, args []string) (string, error) {
	var stdout, stderr bytes.Buffer
	err := runFiles(ctx, dir, env, files, &stdout, &stderr, nil, append([]string{"git"}, args...)...)
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 2000 {
			msg = "…" + msg[len(msg)-2000:]
		}
		msg = g.scrub(msg)
		if msg != "" {
			err = fmt.Errorf("%w: %s", err, msg)
		}
		return stdout.String(), fmt.Errorf("git %s: %w", args[0], err)
	}
	return stdout.String(), nil
}

// start starts git with args in dir as a long-lived process that the
// caller talks to through pipes: see startProcess. The error of its Wait
// names the command, and the token is scrubbed from it as from run's.
func (g *git) start(ctx context.Context, dir string, stdin io.Reader, args ...string) (*process, error) {
	p, err := startProcess(ctx, dir, g.env(), stdin, append([]string{"git"}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("git %s: %w", args[0], err)
	}
	p.name = "git " + args[0]
	p.scrub = g.scrub
	return p, nil
}

// credentialFeed hands the token to the credential helpers of one git
// process and its children: a connected Unix socket whose other end the
// process gets as descriptor 3, and into which a goroutine writes the token,
// one line per helper that asks (git asks once per connection to the remote,
// once per submodule), for as long as the process runs: the socket holds a
// line or is being read, so a helper never waits. A socket, not a pipe:
// another process of Caddy's user can open /proc/<pid>/fd/3 of a pipe and
// read it, not of a socket. close ends it.
type credentialFeed struct {
	ours, theirs *os.File
	done         chan struct{}
}

func newCredentialFeed(token string) (*credentialFeed, error) {
	if token == "" || strings.ContainsAny(token, "\x00\r\n") {
		// A line is the helper's whole answer: nothing may add another.
		return nil, errors.New("handing the token to git: not a token")
	}
	ours, theirs, err := socketPair()
	if err != nil {
		return nil, fmt.Errorf("handing the token to git: %w", err)
	}
	f := &credentialFeed{ours: ours, theirs: theirs, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		// Whatever ends the writes, our end closes, so that a helper reads
		// to the end rather than wait.
		defer ours.Close()
		line := []byte(token + "\n")
		for {
			if _, err := ours.Write(line); err != nil {
				return // closed by close, or nobody left to read
			}
		}
	}()
	return f, nil
}

// close ends the writes and closes both ends: what was not read is gone.
func (f *credentialFeed) close() {
	f.ours.Close() // unblocks a pending Write
	<-f.done
	f.theirs.Close()
}

// scrub removes the token from s, whatever git chose to print.
func (g *git) scrub(s string) string {
	if g.token != "" {
		s = strings.ReplaceAll(s, g.token, "[token]")
	}
	return redactURLsIn(g.scrubHanded(s))
}

// initCache creates the bare cache repository if it is not there, and
// otherwise undoes whatever could make git run something: see cleanCache.
func (g *git) initCache(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(g.cacheDir, "HEAD")); err == nil {
		return g.cleanCache(ctx)
	}
	if err := os.RemoveAll(g.cacheDir); err != nil {
		return fmt.Errorf("removing broken cache repository: %w", err)
	}
	if err := os.MkdirAll(g.cacheDir, 0o755); err != nil {
		return fmt.Errorf("creating cache repository: %w", err)
	}
	_, err := g.run(ctx, g.cacheDir, "init", "--quiet", "--bare", "--template=")
	return err
}

// cacheConfigKeys are the keys the cache repository's config may hold: what
// `git init --bare` writes. Nothing this package runs adds any.
var cacheConfigKeys = map[string]bool{
	"core.repositoryformatversion": true, "core.filemode": true, "core.bare": true,
	"core.logallrefupdates": true, "core.ignorecase": true, "core.precomposeunicode": true,
	"core.symlinks": true, "extensions.objectformat": true, "extensions.refstorage": true,
}

// cleanCache removes from the cache repository what a build without sandbox
// may have written there to make a later git command run something: keys of
// its config beyond cacheConfigKeys (filter drivers, url rewrites, includes:
// those that GIT_CONFIG_COUNT cannot override by name), info/attributes
// (which would apply such filters), and a commondir file (which would point
// git at another repository's config). Hooks need no removal: core.hooksPath
// points at nothing on every command.
func (g *git) cleanCache(ctx context.Context) error {
	for _, name := range []string{"commondir", filepath.Join("info", "attributes")} {
		if err := os.Remove(filepath.Join(g.cacheDir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("cleaning the cache repository: %w", err)
		}
	}
	file := filepath.Join(g.cacheDir, "config")
	before, _ := os.ReadFile(file)
	if before != nil && bytes.Equal(before, g.cleanConfig) {
		return nil
	}
	g.cleanConfig = nil
	out, err := g.run(ctx, g.cacheDir, "config", "--file", file, "--no-includes", "--list", "-z")
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("reading the cache repository's config: %w", err)
		}
		// Not a config file that git reads: every git command would fail
		// on it. What `git init --bare` writes makes the cache work again.
		out = "core.repositoryformatversion\n0\x00core.filemode\ntrue\x00core.bare\ntrue\x00"
	}
	var kept strings.Builder
	sections := map[string][]string{}
	dirty := err != nil
	for _, entry := range strings.Split(out, "\x00") {
		if entry == "" {
			continue
		}
		key, value, _ := strings.Cut(entry, "\n")
		section, name, _ := strings.Cut(key, ".")
		if !cacheConfigKeys[key] || !plainConfigValue(value) {
			dirty = true
			continue
		}
		sections[section] = append(sections[section], "\t"+name+" = "+value+"\n")
	}
	if !dirty {
		if after, _ := os.ReadFile(file); bytes.Equal(after, before) {
			g.cleanConfig = after
		}
		return nil
	}
	for _, section := range []string{"core", "extensions"} {
		if lines := sections[section]; len(lines) > 0 {
			kept.WriteString("[" + section + "]\n" + strings.Join(lines, ""))
		}
	}
	tmp := file + ".tmp-deploy"
	if err := os.WriteFile(tmp, []byte(kept.String()), 0o644); err != nil {
		return fmt.Errorf("resetting the cache repository's config: %w", err)
	}
	if err := os.Rename(tmp, file); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("resetting the cache repository's config: %w", err)
	}
	g.cleanConfig = []byte(kept.String())
	return nil
}

// plainConfigValue reports whether v can be written into a config file as it
// is: the values of cacheConfigKeys are numbers, booleans and names.
func plainConfigValue(v string) bool {
	if v == "" {
		return false
	}
	for _, c := range v {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// defaultBranch asks the remote for the branch its HEAD points to.
func (g *git) defaultBranch(ctx context.Context) (string, error) {
	out, err := g.runRemote(ctx, g.cacheDir, "ls-remote", "--symref", "--", g.remote, "HEAD")
	if err != nil {
		return "", fmt.Errorf("resolving the remote's default branch: %w", err)
	}
	for _, line := range strings.Split(out, "\n") {
		if ref, ok := strings.CutPrefix(line, "ref: refs/heads/"); ok {
			if name, _, ok := strings.Cut(ref, "\tHEAD"); ok {
				return name, nil
			}
		}
	}
	return "", errors.New("resolving the remote's default branch: the remote has no HEAD branch")
}

// depthArgs is Config.Depth as git fetch and git submodule update take it:
// --depth=N, or nothing for 0, the full history.
func depthArgs(depth int) []string {
	if depth <= 0 {
		return nil
	}
	return []string{fmt.Sprintf("--depth=%d", depth)}
}

// fetchRef brings branch's tip into the cache repository and returns the
// ref that holds it. depth 0 fetches the full history, with tags; a
// shallow fetch fetches no tag. Neither gc nor maintenance runs from the
// fetch (fixedGitConfig, and the flag for a git that ignores the config):
// they run when the worker is idle.
func (g *git) fetchRef(ctx context.Context, branch string, depth int) (string, error) {
	ref := "refs/remotes/origin/" + branch
	args := []string{"fetch", "--quiet", "--no-write-fetch-head", "--prune", "--force", "--no-auto-maintenance"}
	if depth > 0 {
		// No tags: they are not deployed, and following them would make
		// the remote list every tag it has on each fetch.
		args = append(append(args, depthArgs(depth)...), "--no-tags")
	} else {
		if _, err := os.Stat(filepath.Join(g.cacheDir, "shallow")); err == nil {
			args = append(args, "--unshallow")
		}
		args = append(args, "--tags")
	}
	args = append(args, "--", g.remote, "+refs/heads/"+branch+":"+ref)
	if _, err := g.runRemote(ctx, g.cacheDir, args...); err != nil {
		return "", fmt.Errorf("fetching %s: %w", branch, err)
	}
	return ref, nil
}

// clearLocks removes the lock files a killed git leaves in the cache
// repository; with them there, every later fetch fails.
func clearLocks(cacheDir string) (removed []string) {
	_ = filepath.WalkDir(cacheDir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && p != cacheDir && (d.Name() == "objects") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), ".lock") {
			if os.Remove(p) == nil {
				removed = append(removed, p)
			}
		}
		return nil
	})
	return removed
}

// RedactURL returns u with any user info replaced, for logs and status.
func RedactURL(u string) string {
	parsed, err := url.Parse(u)
	if err != nil || parsed.User == nil || parsed.Scheme == "" {
		return u
	}
	if _, hasPassword := parsed.User.Password(); hasPassword || parsed.Scheme == "http" || parsed.Scheme == "https" {
		parsed.User = url.User("redacted")
		return parsed.String()
	}
	return u
}

// redactURLsIn redacts credentials of every URL in s.
func redactURLsIn(s string) string {
	fields := strings.Fields(s)
	for _, f := range fields {
		f = strings.Trim(f, `'"()<>,`)
		if strings.Contains(f, "://") && strings.Contains(f, "@") {
			if r := RedactURL(f); r != f {
				s = strings.ReplaceAll(s, f, r)
			}
		}
	}
	return s
}
