package deployer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
)

// deploy brings the site to the branch's tip once and records what came of
// it in Status.Checked. It returns a *fetchError when the remote could not be
// reached, so that the caller retries.
func (d *Deployer) deploy(reason Reason) error {
	c, err := d.deployTip(reason)
	c.Reason = reason
	c.At = d.now()
	d.mu.Lock()
	d.checks++
	c.Count = d.checks
	d.checked = &c
	d.mu.Unlock()
	return err
}

// deployTip does the work of deploy and says what came of it.
func (d *Deployer) deployTip(reason Reason) (Checked, error) {
	cfg := d.config()
	ctx, cancel := context.WithTimeout(d.ctx, cfg.Timeout)
	defer cancel()

	start := d.now()
	d.setRunning(&Running{Reason: reason, Since: start})
	defer d.setRunning(nil)

	g := d.git(cfg)
	tip, branch, err := d.fetchTip(ctx, g, cfg)
	if err != nil && d.ctx.Err() != nil {
		d.log().Info("fetch interrupted: the deployer is stopping")
		return Checked{Outcome: OutcomeInterrupted}, nil
	}
	if err != nil {
		d.finish(reason, start, "", "", "", err)
		return Checked{Outcome: OutcomeFetchFailed}, &fetchError{err}
	}

	d.mu.Lock()
	st := d.st
	d.mu.Unlock()
	live := liveRelease(d.path)
	if r := st.find(live); r != nil && r.Commit == tip {
		d.log().Debug("tip is live", zap.String("commit", tip), zap.String("reason", string(reason)))
		return Checked{Commit: tip, Outcome: OutcomeLive}, nil
	}
	if !reason.explicit() {
		switch tip {
		case st.FailedCommit:
			d.log().Info("tip's build failed before; waiting for a new commit, a delivery or a manual deploy",
				zap.String("commit", tip), zap.String("reason", string(reason)))
			return Checked{Commit: tip, Outcome: OutcomeWaiting, Detail: "failed before"}, nil
		case st.PinnedFrom:
			d.log().Info("tip was rolled back from; waiting for a new commit, a delivery or a manual deploy",
				zap.String("commit", tip), zap.String("reason", string(reason)))
			return Checked{Commit: tip, Outcome: OutcomeWaiting, Detail: "rolled back from"}, nil
		}
	}

	name := d.releaseName(start, tip)
	d.setRunning(&Running{Reason: reason, Commit: tip, Release: name, Since: start})
	d.notify(Event{Kind: EventStarted, Commit: tip, Release: name, Reason: reason})
	d.log().Info("deploying", zap.String("commit", tip), zap.String("branch", branch),
		zap.String("release", name), zap.String("reason", string(reason)))

	tail, err := d.build(ctx, g, cfg, branch, tip, name)
	if err == nil {
		err = d.publish(cfg, tip, name)
	}
	// Stopping (Caddy shutting down, the handler removed) is not the
	// build's fault: the tip is not marked failed, so the next start builds
	// it again. A timeout is the build's fault.
	interrupted := err != nil && d.ctx.Err() != nil
	if err != nil {
		os.RemoveAll(filepath.Join(d.path, releasesName, name))
		g.run(context.WithoutCancel(ctx), g.cacheDir, "worktree", "prune")
		d.diskMu.Lock()
		d.mu.Lock()
		d.st.Building = nil
		if !interrupted {
			d.st.FailedCommit = tip
		}
		st := d.st
		d.mu.Unlock()
		if serr := st.save(d.path); serr != nil {
			d.log().Error("saving state", zap.Error(serr))
		}
		d.diskMu.Unlock()
	}
	if interrupted {
		d.log().Info("deploy interrupted: the deployer is stopping; the next start deploys again",
			zap.String("commit", tip), zap.String("release", name))
		return Checked{Commit: tip, Outcome: OutcomeInterrupted}, nil
	}
	d.finish(reason, start, tip, name, tail, err)
	if err != nil {
		return Checked{Commit: tip, Outcome: OutcomeFailed}, nil
	}
	d.prune(cfg)
	return Checked{Commit: tip, Outcome: OutcomeDeployed}, nil
}

// fetchTip fetches the branch into the cache repository and returns its tip.
func (d *Deployer) fetchTip(ctx context.Context, g *git, cfg Config) (tip, branch string, err error) {
	if err := g.initCache(ctx); err != nil {
		return "", "", err
	}
	branch = cfg.Branch
	if branch == "" {
		d.mu.Lock()
		branch = d.resolved
		d.mu.Unlock()
		if branch == "" {
			if branch, err = g.defaultBranch(ctx); err != nil {
				return "", "", err
			}
			d.mu.Lock()
			if d.cfg.Remote == cfg.Remote && d.cfg.Branch == "" {
				d.resolved = branch
			}
			d.mu.Unlock()
		}
	}
	tip, err = g.fetch(ctx, branch, cfg.Depth)
	return tip, branch, err
}

// finish records the outcome of a deploy that got past "nothing to do", logs
// it and emits its event.
func (d *Deployer) finish(reason Reason, start time.Time, tip, name, tail string, err error) {
	now := d.now()
	took := now.Sub(start)
	res := &Result{Result: "ok", Duration: Seconds(took), Reason: reason, Commit: tip, Release: name, At: now}
	if name != "" {
		res.Log = filepath.Join(d.path, releasesName, name+".log")
	}
	if err != nil {
		res.Result = "error"
		res.Error = err.Error()
		res.OutputTail = tail
	}
	d.mu.Lock()
	prev := d.last
	d.last = res
	d.mu.Unlock()

	fields := []zap.Field{
		zap.String("commit", tip), zap.String("release", name),
		zap.Duration("duration", took), zap.String("reason", string(reason)),
	}
	if err == nil {
		d.log().Info("deploy succeeded", fields...)
		d.notify(Event{Kind: EventSucceeded, Commit: tip, Release: name, Reason: reason, Duration: took, At: now})
		return
	}
	fields = append(fields, zap.String("error", res.Error))
	if tail != "" {
		fields = append(fields, zap.String("output_tail", tail))
	}
	d.log().Error("deploy failed", fields...)
	// A remote that stays down fails on every retry; tell subscribers once.
	if name == "" && prev != nil && prev.Result == "error" && prev.Release == "" && prev.Error == res.Error {
		return
	}
	d.notify(Event{Kind: EventFailed, Commit: tip, Release: name, Reason: reason, Duration: took, Err: err, At: now})
}

func (d *Deployer) git(cfg Config) *git {
	return &git{
		cacheDir:   filepath.Join(d.path, cacheName),
		remote:     cfg.Remote,
		token:      cfg.Token,
		sshKey:     cfg.SSHKey,
		knownHosts: cfg.KnownHosts,
	}
}

// releaseName names a release so that a person can tell when and which
// commit: 20261127T052300Z-1a2b3c4d5e6f.
func (d *Deployer) releaseName(at time.Time, commit string) string {
	short := commit
	if len(short) > 12 {
		short = short[:12]
	}
	base := at.UTC().Format("20060102T150405Z") + "-" + short
	name := base
	for i := 2; ; i++ {
		if _, err := os.Lstat(filepath.Join(d.path, releasesName, name)); errors.Is(err, fs.ErrNotExist) {
			return name
		}
		name = fmt.Sprintf("%s-%d", base, i)
	}
}

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

	if prev, ok := d.linkable(cfg); ok {
		err := linkRelease(ctx, g, filepath.Join(d.path, releasesName, prev.Name), prev.Commit, dir, commit)
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
		if cfg.Depth > 0 {
			args = append(args, fmt.Sprintf("--depth=%d", cfg.Depth))
		}
		if _, err := g.run(ctx, dir, args...); err != nil {
			return sink.tail.String(), fmt.Errorf("checking out submodules: %w", err)
		}
	}

	env := commandEnv(cfg, branch, commit, dir)
	var box *sandbox
	if cfg.Sandbox && len(cfg.Commands) > 0 {
		var err error
		if box, err = newSandbox(ctx, cfg, d.path, dir); err != nil {
			return sink.tail.String(), err
		}
		env = box.env(cfg, env)
	}
	for _, argv := range cfg.Commands {
		fmt.Fprintf(sink, "$ %s\n", strings.Join(argv, " "))
		full := argv
		if box != nil {
			full = box.argv(argv)
		}
		err := run(ctx, dir, env, sink, sink, func(pgid int) {
			d.recordBuilding(&building{Release: name, Commit: commit, Publish: cfg.Publish, PGID: pgid})
		}, full...)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
				fmt.Fprintf(sink, "%v\n", err)
			}
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
		case k == "GIT_DIR", k == "GIT_WORK_TREE", k == "GIT_INDEX_FILE", k == tokenEnv:
			continue
		case slices.Contains(cfg.Unset, k):
			continue
		}
		env = append(env, kv)
	}
	env = append(env, cfg.Env...)
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

// syncRelease puts a release's files on disk; tests wrap it.
var syncRelease = syncTree

// publish checks the release, strips what must not be served, puts it on
// disk and switches current to it.
func (d *Deployer) publish(cfg Config, commit, name string) error {
	dir := filepath.Join(d.path, releasesName, name)
	pub, err := publishedDir(dir, cfg.Publish)
	if err != nil {
		return err
	}
	if err := removeGitEntries(dir); err != nil {
		return fmt.Errorf("removing .git from the release: %w", err)
	}
	if err := checkLinks(dir, pub, cfg.Publish); err != nil {
		return err
	}
	// A power cut after the switch must not leave the live site with
	// files that were never written out.
	if err := syncRelease(dir); err != nil {
		return err
	}
	d.diskMu.Lock()
	defer d.diskMu.Unlock()
	if err := switchCurrent(d.path, filepath.Join(releasesName, name, cfg.Publish)); err != nil {
		return err
	}
	now := d.now()
	d.mu.Lock()
	d.st.Building = nil
	d.st.FailedCommit = ""
	d.st.PinnedFrom = ""
	d.st.LastSuccess = now
	d.st.Releases = append(d.st.Releases, releaseRecord{Name: name, Commit: commit, Publish: cfg.Publish, At: now,
		Pristine: len(cfg.Commands) == 0 && !cfg.Submodules})
	d.liveAt = now
	st := d.st
	d.mu.Unlock()
	if err := st.save(d.path); err != nil {
		// The site is live; only the memory of it across a restart is lost.
		d.log().Error("saving state", zap.Error(err))
	}
	return nil
}

// publishedDir returns the folder of release dir that goes live, and checks
// that it is a folder inside the release, symlinks resolved.
func publishedDir(dir, publish string) (string, error) {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", fmt.Errorf("resolving the release: %w", err)
	}
	if publish == "" {
		return root, nil
	}
	target, err := filepath.EvalSymlinks(filepath.Join(dir, publish))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("publish folder %q does not exist after the build", publish)
		}
		return "", fmt.Errorf("resolving publish folder %q: %w", publish, err)
	}
	if rel, err := filepath.Rel(root, target); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("publish folder %q resolves outside the release", publish)
	}
	if fi, err := os.Stat(target); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("publish folder %q is not a folder", publish)
	}
	return target, nil
}

// removeGitEntries removes everything named .git under dir: the checkout's
// own link to the cache, and those of submodules and nested worktrees.
func removeGitEntries(dir string) error {
	var errs []error
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		if e.Name() == ".git" {
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, err)
			}
			if e.IsDir() {
				return filepath.SkipDir
			}
		}
		return nil
	})
	return errors.Join(append(errs, err)...)
}

// switchCurrent points path/current at target (relative to path) in one
// rename(2) of a fresh symlink over the old one: readers see the old site or
// the new one, never neither.
func switchCurrent(path, target string) error {
	cur := filepath.Join(path, currentName)
	if fi, err := os.Lstat(cur); err == nil && fi.Mode()&fs.ModeSymlink == 0 {
		return fmt.Errorf("%s is not a symlink; move it away so the deployer can manage it", cur)
	}
	tmp := filepath.Join(path, fmt.Sprintf(".current.tmp-%d", time.Now().UnixNano()))
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("switching current: %w", err)
	}
	if err := os.Rename(tmp, cur); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("switching current: %w", err)
	}
	if f, err := os.Open(path); err == nil {
		f.Sync()
		f.Close()
	}
	return nil
}

// prune removes releases beyond Keep, never the live one, and logs of
// releases that are gone, but the last failed build's.
func (d *Deployer) prune(cfg Config) {
	d.diskMu.Lock()
	defer d.diskMu.Unlock()
	live := liveRelease(d.path)
	d.mu.Lock()
	keep := map[string]bool{live: true}
	for i := len(d.st.Releases) - 1; i >= 0 && len(keep) < cfg.Keep; i-- {
		keep[d.st.Releases[i].Name] = true
	}
	var drop []string
	for _, r := range d.st.Releases {
		if !keep[r.Name] {
			drop = append(drop, r.Name)
		}
	}
	for _, name := range drop {
		d.st.remove(name)
	}
	st := d.st
	lastLog := ""
	if d.last != nil && d.last.Result == "error" {
		lastLog = d.last.Log
	}
	d.mu.Unlock()

	// Forget the releases before removing them: a crash half-way through a
	// removal then leaves a folder that recovery removes, never a
	// half-removed release that the state offers for rollback.
	var errs []error
	if err := st.save(d.path); err != nil {
		d.log().Warn("pruning releases", zap.Error(err))
		return
	}
	dir := filepath.Join(d.path, releasesName)
	for _, name := range drop {
		errs = append(errs, os.RemoveAll(filepath.Join(dir, name)))
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		name, isLog := strings.CutSuffix(e.Name(), ".log")
		if !isLog || keep[name] || filepath.Join(dir, e.Name()) == lastLog {
			continue
		}
		errs = append(errs, os.Remove(filepath.Join(dir, e.Name())))
	}
	g := d.git(cfg)
	if _, err := os.Stat(filepath.Join(g.cacheDir, "worktrees")); err == nil {
		if _, err := g.run(d.ctx, g.cacheDir, "worktree", "prune"); err != nil && d.ctx.Err() == nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		d.log().Warn("pruning releases", zap.Error(err))
	}
	if len(drop) > 0 {
		d.log().Debug("pruned releases", zap.Strings("releases", drop))
	}
}

// recoverFolder makes the folder consistent after whatever ended the last
// process: it ends a build a crash left running, removes half-built releases,
// stray temporary symlinks and git's lock files, and keeps the live release.
func (d *Deployer) recoverFolder() {
	d.diskMu.Lock()
	defer d.diskMu.Unlock()
	st, err := loadState(d.path)
	if err != nil {
		d.log().Warn("starting from an empty state", zap.Error(err))
	}
	dir := filepath.Join(d.path, releasesName)
	live := liveRelease(d.path)
	if b := st.Building; b != nil && validReleaseName(b.Release) {
		rel := filepath.Join(dir, b.Release)
		if n := killLeftoverGroup(b.PGID, rel); n > 0 {
			d.log().Warn("ended a build left running by the last process", zap.String("release", b.Release), zap.Int("processes", n))
		}
		switch {
		case b.Release == live:
			// The process died between the switch and writing the state:
			// the release is complete, and live.
			if st.find(live) == nil {
				st.Releases = append(st.Releases, releaseRecord{Name: live, Commit: b.Commit, Publish: b.Publish, At: d.now()})
				st.LastSuccess = d.now()
			}
		default:
			if err := os.RemoveAll(rel); err != nil {
				d.log().Error("removing a half-built release", zap.String("release", b.Release), zap.Error(err))
			} else {
				d.log().Info("removed a half-built release", zap.String("release", b.Release))
			}
		}
	}
	st.Building = nil

	if tmps, _ := filepath.Glob(filepath.Join(d.path, tmpLinkGlob)); len(tmps) > 0 {
		for _, t := range tmps {
			os.Remove(t)
		}
		d.log().Info("removed stray temporary symlinks", zap.Int("count", len(tmps)))
	}

	known := map[string]bool{}
	kept := st.Releases[:0]
	for _, r := range st.Releases {
		if fi, err := os.Stat(filepath.Join(dir, r.Name)); err == nil && fi.IsDir() {
			kept = append(kept, r)
			known[r.Name] = true
		}
	}
	st.Releases = kept
	if live != "" && !known[live] {
		if fi, err := os.Stat(filepath.Join(dir, live)); err == nil && fi.IsDir() {
			// Live, but unknown to the state: keep it, with no commit, so
			// that the tip is deployed again.
			st.Releases = append(st.Releases, releaseRecord{Name: live, Publish: livePublish(d.path)})
			known[live] = true
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() && !known[e.Name()] {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				d.log().Error("removing a half-built release", zap.String("release", e.Name()), zap.Error(err))
			} else {
				d.log().Info("removed a half-built release", zap.String("release", e.Name()))
			}
		}
	}
	if removed := clearLocks(filepath.Join(d.path, cacheName)); len(removed) > 0 {
		d.log().Info("removed git lock files left by the last process", zap.Strings("files", removed))
	}
	// No release is a worktree between deploys (publishing removes the link),
	// and a killed `git worktree add` leaves its record locked, which would
	// refuse a release of the same name. Forget them all.
	if err := os.RemoveAll(filepath.Join(d.path, cacheName, "worktrees")); err != nil {
		d.log().Error("removing worktree records", zap.Error(err))
	}
	d.mu.Lock()
	if fi, err := os.Lstat(filepath.Join(d.path, currentName)); err == nil {
		d.liveAt = fi.ModTime()
	}
	d.st = st
	d.mu.Unlock()
	if err := st.save(d.path); err != nil {
		d.log().Error("saving state", zap.Error(err))
	}
	if r := st.find(live); r != nil {
		d.notify(Event{Kind: EventRecovered, Commit: r.Commit, Release: r.Name, At: st.LastSuccess})
	}
}

// validReleaseName reports whether name can be a folder of releases/.
func validReleaseName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\\\x00")
}

// livePublish returns the publish folder current points into, after the
// release's name.
func livePublish(path string) string {
	target, err := os.Readlink(filepath.Join(path, currentName))
	if err != nil {
		return ""
	}
	parts := strings.SplitN(filepath.ToSlash(filepath.Clean(target)), "/", 3)
	if len(parts) < 3 {
		return ""
	}
	return parts[2]
}

// Rollback switches current to release, or, when release is "", to the
// newest kept release older than the live one. Start-up and poll then leave
// the commit rolled back from alone, also after a restart; a new commit, a
// delivery or a manual deploy deploys again.
func (d *Deployer) Rollback(release string) (Live, error) {
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return Live{}, ErrClosed
	}
	d.diskMu.Lock()
	defer d.diskMu.Unlock()
	live := liveRelease(d.path)
	d.mu.Lock()
	st := d.st
	d.mu.Unlock()

	var target *releaseRecord
	if release == "" {
		for i := len(st.Releases) - 1; i >= 0; i-- {
			if st.Releases[i].Name == live {
				if i > 0 {
					target = &st.Releases[i-1]
				}
				break
			}
		}
		if target == nil {
			return Live{}, ErrNoOlderRelease
		}
	} else {
		target = st.find(release)
		if target == nil {
			return Live{}, fmt.Errorf("%w: %q", ErrUnknownRelease, release)
		}
	}
	targetDir := filepath.Join(d.path, releasesName, target.Name)
	pub, err := publishedDir(targetDir, target.Publish)
	if err == nil {
		err = checkLinks(targetDir, pub, target.Publish)
	}
	if err != nil {
		return Live{}, fmt.Errorf("rolling back to %s: %w", target.Name, err)
	}
	if target.Name != live {
		if err := switchCurrent(d.path, filepath.Join(releasesName, target.Name, target.Publish)); err != nil {
			return Live{}, err
		}
	}
	now := d.now()
	d.mu.Lock()
	if r := d.st.find(live); r != nil && d.st.PinnedFrom == "" && r.Name != target.Name {
		d.st.PinnedFrom = r.Commit
	}
	d.liveAt = now
	st = d.st
	d.mu.Unlock()
	if err := st.save(d.path); err != nil {
		return Live{}, err
	}
	d.log().Info("rolled back", zap.String("release", target.Name), zap.String("commit", target.Commit), zap.String("from", live))
	d.notify(Event{Kind: EventRolledBack, Commit: target.Commit, Release: target.Name, At: now})
	return Live{Commit: target.Commit, Release: target.Name, At: now}, nil
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}
