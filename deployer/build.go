package deployer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"go.uber.org/zap"
)

// build materialises commit into releases/name and runs the commands there.
// It returns the tail of the commands' output.
func (d *Deployer) build(ctx context.Context, g *git, cfg Config, branch, commit, name string) (string, error) {
	dir := filepath.Join(d.path, releasesName, name)
	sink := &outputSink{}
	if f, err := os.Create(dir + ".log"); err != nil {
		d.log().Warn("cannot write the build log; keeping its tail in memory only", zap.Error(err))
	} else {
		defer f.Close()
		sink.log.w = f
	}

	// Record the build before its folder exists, so that a crash from here
	// on leaves a record that the next start cleans up after.
	if err := d.recordBuilding(&building{Release: name, Commit: commit, Publish: cfg.Publish}); err != nil {
		return "", err
	}

	if ok, err := d.reuseSpare(ctx, g, cfg, name, commit, sink); ok || err != nil {
		return sink.tail.String(), err
	}
	if prev, prevDir, ok := d.linkSource(cfg); ok {
		err := d.linkRelease(ctx, g, prevDir, prev.Commit, dir, commit)
		if err == nil {
			fmt.Fprintf(sink, "linked unchanged files from %s, wrote the changed ones\n", prev.Name)
			return sink.tail.String(), nil
		}
		d.log().Debug("linking from the live release failed; checking out in full", zap.Error(err))
		if err := os.RemoveAll(dir); err != nil {
			return "", fmt.Errorf("removing a partial release: %w", err)
		}
	}

	if _, err := g.run(ctx, g.cacheDir, "worktree", "prune"); err != nil {
		return "", fmt.Errorf("pruning worktrees: %w", err)
	}
	if _, err := g.run(ctx, g.cacheDir, "worktree", "add", "--quiet", "--detach", "--force", "--", dir, commit); err != nil {
		return sink.tail.String(), fmt.Errorf("checking out %s: %w", short(commit), err)
	}
	if cfg.Submodules {
		// Submodules with local paths could check out any repository
		// Caddy's user can read into the public release: the file protocol
		// is allowed only when the site itself comes from a local remote.
		var args []string
		if isLocalRemote(cfg.Remote) {
			args = append(args, "-c", "protocol.file.allow=always")
		}
		args = append(args, "submodule", "update", "--quiet", "--init", "--recursive")
		args = append(args, depthArgs(cfg.Depth)...)
		if _, err := g.runRemote(ctx, dir, args...); err != nil {
			return sink.tail.String(), fmt.Errorf("checking out submodules: %w", err)
		}
	}

	// Files git wrote get the modes of every release, whatever the umask
	// (objects.go), before the commands run.
	if err := fixCheckoutModes(dir); err != nil {
		return sink.tail.String(), fmt.Errorf("setting the modes of the checkout: %w", err)
	}

	cacheEnv, err := d.prepareCaches(ctx, cfg, dir, sink)
	if err != nil {
		return sink.tail.String(), err
	}
	env := commandEnv(cfg, branch, commit, dir)
	var box *sandbox
	if cfg.Sandbox && len(cfg.Commands) > 0 {
		var err error
		if box, err = newSandbox(ctx, cfg, d.path, d.repo, dir, filepath.Join(d.path, buildCacheName)); err != nil {
			return sink.tail.String(), err
		}
		env = box.env(cfg, env)
	}
	env = append(env, cacheEnv...)
	tail, err := d.runCommands(ctx, cfg, box, dir, env, sink, name, commit)
	if box != nil {
		if rerr := box.restore(); rerr != nil && err == nil {
			return sink.tail.String(), rerr
		}
	}
	return tail, err
}

// runCommands runs the commands of cfg in dir, in box when it is not nil.
func (d *Deployer) runCommands(ctx context.Context, cfg Config, box *sandbox, dir string, env []string, sink *outputSink, name, commit string) (string, error) {
	var cg *buildCgroup
	if cfg.Limits != nil && len(cfg.Commands) > 0 {
		var err error
		if cg, err = newBuildCgroup(cfg.Limits, name); err != nil {
			fmt.Fprintln(sink, err)
			return err.Error(), &BuildError{Command: "limits", ExitCode: -1, Tail: err.Error(), Err: err}
		}
		defer cg.remove()
		ctx = withBuildCgroup(ctx, cg)
	}
	for _, argv := range cfg.Commands {
		fmt.Fprintf(sink, "$ %s\n", strings.Join(argv, " "))
		onStart := func(pgid int) {
			d.recordBuilding(&building{Release: name, Commit: commit, Publish: cfg.Publish, PGID: pgid})
		}
		var err error
		if box != nil {
			err = box.run(ctx, dir, env, sink, sink, onStart, argv)
		} else {
			err = run(ctx, dir, env, sink, sink, onStart, argv...)
		}
		if cg != nil {
			err = cg.explain(err)
		}
		if err != nil {
			// The build log says why the command ended, as the status
			// does: a program that is not installed leaves no output of
			// its own.
			fmt.Fprintln(sink, commandFailure(err, env))
			tail := sink.tail.String()
			return tail, &BuildError{Command: strings.Join(argv, " "), ExitCode: exitCode(err), Tail: tail, Err: err}
		}
	}
	if sink.log.failed != nil {
		d.log().Warn("build log is incomplete", zap.String("release", name), zap.Error(sink.log.failed))
	}
	return sink.tail.String(), nil
}

// commandEnv is the environment of build commands: Caddy's own, minus git
// variables that would point git elsewhere, plus Config.Env and DEPLOY_*.
func commandEnv(cfg Config, branch, commit, dir string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "GIT_DIR", k == "GIT_WORK_TREE", k == "GIT_INDEX_FILE":
			continue
		case slices.Contains(cfg.Unset, k):
			continue
		}
		env = append(env, kv)
	}
	env = append(env, cfg.Env...)
	if cfg.URL != "" {
		env = append(env, "DEPLOY_URL="+cfg.URL)
	}
	return append(env,
		"DEPLOY_COMMIT="+commit,
		"DEPLOY_BRANCH="+branch,
		"DEPLOY_REPO="+cfg.Repo,
		"DEPLOY_RELEASE="+dir,
	)
}

func (d *Deployer) recordBuilding(b *building) error {
	d.diskMu.Lock()
	defer d.diskMu.Unlock()
	d.mu.Lock()
	d.st.Building = b
	st := d.st
	d.mu.Unlock()
	return st.save(d.path)
}

// commandFailure is the line that the build log gets when a command fails:
// its error, and for a program that is not found, the PATH it was looked
// up in and what to do.
func commandFailure(err error, env []string) string {
	if !errors.Is(err, exec.ErrNotFound) {
		return err.Error()
	}
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	return fmt.Sprintf("%v (PATH=%s): install it where the user Caddy runs as finds it, or write its full path in command", err, path)
}
