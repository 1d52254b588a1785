package deployer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// tokenEnv is the variable through which the credential helper receives the
// token. Only git's own environment carries it; build commands never do.
const tokenEnv = "CADDY_GITHUB_WEBHOOK_TOKEN"

// credentialHelper is a constant shell snippet, not built from any input: git
// runs it for "get" and it prints the token from the environment. Putting the
// token here instead would write it into argv or a config file.
const credentialHelper = `!f() { test "$1" = get || exit 0; echo username=x-access-token; printf 'password=%s\n' "$` + tokenEnv + `"; }; f`

// git runs the git commands of one target. Every git command of the package
// passes through run, with an explicit directory and environment, its output
// captured, and errors that name the command and never the token.
type git struct {
	cacheDir   string // the cache repository (bare)
	remote     string
	token      string
	sshKey     string
	knownHosts string
}

// env returns the environment of a git process: the process's own, minus
// anything that would make git prompt or look elsewhere, plus credentials.
func (g *git) env() []string {
	env := make([]string, 0, len(os.Environ())+8)
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_ASKPASS", "SSH_ASKPASS",
			"GIT_SSH_COMMAND", "GIT_TERMINAL_PROMPT", "GIT_CONFIG_COUNT", tokenEnv:
			continue
		}
		if strings.HasPrefix(k, "GIT_CONFIG_KEY_") || strings.HasPrefix(k, "GIT_CONFIG_VALUE_") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env,
		"GIT_TERMINAL_PROMPT=0",
		"GIT_ASKPASS=true", // answers every prompt with nothing: never a hang
		"GIT_SSH_COMMAND="+g.sshCommand(),
		"GIT_CONFIG_COUNT=3",
		// An empty helper first resets helpers from other config files.
		"GIT_CONFIG_KEY_0=credential.helper", "GIT_CONFIG_VALUE_0=",
		// The token goes to the remote's host only, never to another host
		// that asks (a submodule's, a redirect's).
		"GIT_CONFIG_KEY_1="+g.helperKey(), "GIT_CONFIG_VALUE_1="+g.helper(),
		// Worktrees of the cache are created and pruned by us only.
		"GIT_CONFIG_KEY_2=gc.auto", "GIT_CONFIG_VALUE_2=0",
	)
	if g.token != "" {
		env = append(env, tokenEnv+"="+g.token)
	}
	return env
}

// helperKey is the config key of the credential helper: scoped to the
// remote's scheme and host when the remote is a URL.
func (g *git) helperKey() string {
	if u, err := url.Parse(g.remote); err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" {
		return "credential." + u.Scheme + "://" + u.Host + ".helper"
	}
	return "credential.helper"
}

// isLocalRemote reports whether remote is a path or a file:// URL.
func isLocalRemote(remote string) bool {
	if strings.HasPrefix(remote, "file://") || strings.HasPrefix(remote, "/") || strings.HasPrefix(remote, ".") {
		return true
	}
	return !strings.Contains(remote, "://") && !strings.Contains(remote, ":")
}

func (g *git) helper() string {
	if g.token == "" {
		return ""
	}
	return credentialHelper
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

// run runs git with args in dir and returns its standard output.
func (g *git) run(ctx context.Context, dir string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	err := run(ctx, dir, g.env(), &stdout, &stderr, nil, append([]string{"git"}, args...)...)
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

// scrub removes the token from s, whatever git chose to print.
func (g *git) scrub(s string) string {
	if g.token != "" {
		s = strings.ReplaceAll(s, g.token, "[token]")
	}
	return redactURLsIn(s)
}

// initCache creates the bare cache repository if it is not there.
func (g *git) initCache(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(g.cacheDir, "HEAD")); err == nil {
		return nil
	}
	if err := os.RemoveAll(g.cacheDir); err != nil {
		return fmt.Errorf("removing broken cache repository: %w", err)
	}
	if err := os.MkdirAll(g.cacheDir, 0o755); err != nil {
		return fmt.Errorf("creating cache repository: %w", err)
	}
	_, err := g.run(ctx, g.cacheDir, "init", "--quiet", "--bare")
	return err
}

// defaultBranch asks the remote for the branch its HEAD points to.
func (g *git) defaultBranch(ctx context.Context) (string, error) {
	out, err := g.run(ctx, g.cacheDir, "ls-remote", "--symref", "--", g.remote, "HEAD")
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

// fetch brings branch's tip into the cache repository and returns its commit.
// depth < 0 fetches the full history, with tags.
func (g *git) fetch(ctx context.Context, branch string, depth int) (string, error) {
	ref := "refs/remotes/origin/" + branch
	args := []string{"fetch", "--quiet", "--no-write-fetch-head", "--prune", "--force"}
	if depth > 0 {
		args = append(args, fmt.Sprintf("--depth=%d", depth))
	} else {
		if _, err := os.Stat(filepath.Join(g.cacheDir, "shallow")); err == nil {
			args = append(args, "--unshallow")
		}
		args = append(args, "--tags")
	}
	args = append(args, "--", g.remote, "+refs/heads/"+branch+":"+ref)
	if _, err := g.run(ctx, g.cacheDir, args...); err != nil {
		return "", fmt.Errorf("fetching %s: %w", branch, err)
	}
	out, err := g.run(ctx, g.cacheDir, "rev-parse", "--verify", "--end-of-options", ref+"^{commit}")
	if err != nil {
		return "", fmt.Errorf("reading the tip of %s: %w", branch, err)
	}
	return strings.TrimSpace(out), nil
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
