package deployer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// homeName is the folder under Path that sandboxed commands get as their
// HOME. It outlives releases, so that tools can keep their caches there.
const homeName = "home"

// sandboxKeep names the variables of the process's environment that
// sandboxed commands keep; LC_* too. Everything else they get is set by
// the deployer: HOME, Config.Env and DEPLOY_*.
var sandboxKeep = []string{"PATH", "LANG", "LANGUAGE", "TZ"}

// defaultPath is the PATH of sandboxed commands when the process has none.
const defaultPath = "/usr/local/bin:/usr/bin:/bin"

// errNoBwrap is the error of a sandboxed deploy on a host without bwrap.
var errNoBwrap = errors.New("sandbox: bwrap not found: install bubblewrap (apt install bubblewrap)")

// sandbox runs the commands of one deploy under bubblewrap. See
// Config.Sandbox for what the commands can reach.
type sandbox struct {
	prefix []string // what goes before a command's argv: bwrap <options> --
	home   string
}

// newSandbox prepares the sandbox of release (a folder of path/releases),
// with the existing folders writable (such as the cache home) writable in
// it too, and checks that bwrap starts with it, so that a host that cannot
// run bwrap fails with bwrap's own reason and not as a failed build.
func newSandbox(ctx context.Context, cfg Config, path, release string, writable ...string) (*sandbox, error) {
	if err := platformError(runtime.GOOS, cfg); err != nil {
		return nil, err // Validate refused it already
	}
	bwrap, err := exec.LookPath("bwrap")
	if err != nil {
		return nil, errNoBwrap
	}
	home := filepath.Join(path, homeName)
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, fmt.Errorf("sandbox: creating the home folder: %w", err)
	}
	s := &sandbox{prefix: append([]string{bwrap}, bwrapArgs(path, release, home, hidden(cfg), writable)...), home: home}

	var out bytes.Buffer
	if err := run(ctx, release, s.env(cfg, os.Environ()), &out, &out, nil, s.argv([]string{"true"})...); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("sandbox: starting bwrap: %w", err)
		}
		msg := strings.TrimSpace(out.String())
		if len(msg) > 500 {
			msg = msg[:500] + "…"
		}
		return nil, fmt.Errorf("sandbox: bwrap cannot start: %w: %s", err, msg)
	}
	return s, nil
}

// bwrapArgs returns bwrap's options for a command of release: the host's
// file system read-only, the files and folders of hide masked, a private
// /dev, /proc and /tmp, path replaced by an empty read-only folder into
// which only release and home (writable), the cache repository (read-only,
// for builds that read the history) and the writable folders come back,
// no capabilities (not even when Caddy runs as root), and a PID namespace
// that dies with the command or with the deploy.
//
// writable are more folders under path bound writable, as home is: the
// build cache home.
func bwrapArgs(path, release, home string, hide, writable []string) []string {
	args := []string{"--ro-bind", "/", "/"}
	var readOnly []string // hidden folders, made read-only once path is in place
	for _, h := range hide {
		fi, err := os.Stat(h)
		if err != nil {
			continue // nothing there to see
		}
		if real, err := filepath.EvalSymlinks(h); err == nil {
			h = real
		}
		if within("/tmp", h) || within(path, h) {
			continue // out of sight already, under the tmpfs below
		}
		if fi.IsDir() {
			args = append(args, "--tmpfs", h)
			readOnly = append(readOnly, h)
		} else {
			args = append(args, "--ro-bind", "/dev/null", h)
		}
	}
	args = append(args,
		"--dev", "/dev",
		"--proc", "/proc",
		"--tmpfs", "/tmp",
		"--tmpfs", path,
		"--ro-bind", filepath.Join(path, cacheName), filepath.Join(path, cacheName),
		"--bind", release, release,
		"--bind", home, home,
	)
	for _, w := range writable {
		args = append(args, "--bind", w, w)
	}
	for _, h := range append(readOnly, path) {
		args = append(args, "--remount-ro", h)
	}
	return append(args,
		// Its own PID namespace: the command sees no other process, and
		// when it ends, its PID 1 (bwrap's) ends and the kernel kills every
		// process left in the namespace, setsid or not.
		"--unshare-pid",
		// When the deploy kills bwrap (timeout, Caddy stopping), the
		// namespace's PID 1 gets SIGKILL.
		"--die-with-parent",
		// Run as root, bwrap would keep root's capabilities, with which a
		// command undoes the mounts (umount, remount read-write).
		"--cap-drop", "ALL",
		// No --new-session: bwrap and the command stay in the process
		// group that run made (in a session of its own, with no terminal),
		// so that run's renice and kill reach them.
		"--chdir", release,
		"--",
	)
}

// hidden returns the absolute, existing or not, paths that cfg hides.
func hidden(cfg Config) []string {
	hide := append([]string(nil), cfg.Hide...)
	if cfg.SSHKey != "" {
		if abs, err := filepath.Abs(cfg.SSHKey); err == nil {
			hide = append(hide, abs)
		}
	}
	return hide
}

// argv returns the command line that runs command in the sandbox.
func (s *sandbox) argv(command []string) []string {
	return append(append([]string(nil), s.prefix...), command...)
}

// env returns the environment of a sandboxed command, from commandEnv,
// the one it would have unsandboxed: only sandboxKeep (and LC_*), the
// variables of Config.Env, DEPLOY_*, and HOME, the sandbox's home. bwrap
// passes its own environment on, so no value is on a command line.
func (s *sandbox) env(cfg Config, commandEnv []string) []string {
	keep := map[string]bool{"DEPLOY_COMMIT": true, "DEPLOY_BRANCH": true, "DEPLOY_REPO": true, "DEPLOY_RELEASE": true}
	for _, k := range sandboxKeep {
		keep[k] = true
	}
	for _, kv := range cfg.Env {
		k, _, _ := strings.Cut(kv, "=")
		keep[k] = true
	}
	var env []string
	hasPath := false
	for _, kv := range commandEnv {
		k, _, _ := strings.Cut(kv, "=")
		if keep[k] || strings.HasPrefix(k, "LC_") {
			env = append(env, kv)
			hasPath = hasPath || k == "PATH"
		}
	}
	if !hasPath {
		env = append(env, "PATH="+defaultPath)
	}
	return append(env, "HOME="+s.home)
}

// within reports whether p is dir or inside it, both clean and absolute.
func within(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
