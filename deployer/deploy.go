package deployer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"
)

// deploy brings the site to the branch's tip once and records what came of
// it in Status.Checked. It returns a *fetchError when the remote could not be
// reached, so that the caller retries.
//
// Running is cleared in the same step as Checked is set: a Status with no
// Running shows the Checked, Last and releases of the wake handled last.
func (d *Deployer) deploy(reason Reason) error {
	c, err := d.deployTip(reason)
	c.Reason = reason
	c.At = d.now()
	d.mu.Lock()
	d.running = nil
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
	d.setRunning(&Running{Reason: reason, Since: start}) // deploy clears it

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
	if cfg.Cluster != nil {
		return d.deployGroupTip(ctx, cfg, g, reason, tip, branch, start)
	}

	if c, build, err := d.decide(ctx, cfg, d.localFacts(cfg, reason, tip)); !build {
		return c, err
	}
	return d.buildTip(ctx, cfg, g, reason, tip, branch, start, nil)
}

// buildTip builds tip into a new release and publishes it; store, when
// set, is called with the release's name and published folder once it is
// checked, before current switches to it.
func (d *Deployer) buildTip(ctx context.Context, cfg Config, g *git, reason Reason, tip, branch string, start time.Time,
	store func(name, pub string) error) (Checked, error) {
	d.yieldPreview() // production first
	name := d.releaseName(start, tip)
	d.setRunning(&Running{Reason: reason, Commit: tip, Release: name, Since: start})
	d.notify(Event{Kind: EventStarted, Commit: tip, Release: name, Reason: reason})
	d.log().Info("deploying", zap.String("commit", tip), zap.String("branch", branch),
		zap.String("release", name), zap.String("reason", string(reason)))

	tail, err := d.build(ctx, g, cfg, branch, tip, name)
	if err == nil {
		err = d.publish(cfg, tip, name, store)
	}
	// Stopping (Caddy shutting down, the handler removed) is not the
	// build's fault: the tip is not marked failed, so the next start builds
	// it again. A timeout is the build's fault.
	interrupted := err != nil && d.ctx.Err() != nil
	// Storage that failed is no fault of the build either: retried with
	// backoff.
	var se *storageError
	storage := errors.As(err, &se)
	if err != nil {
		os.RemoveAll(filepath.Join(d.path, releasesName, name))
		g.run(context.WithoutCancel(ctx), g.cacheDir, "worktree", "prune")
		d.diskMu.Lock()
		d.mu.Lock()
		d.st.Building = nil
		if !interrupted && !storage {
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
		d.notify(Event{Kind: EventInterrupted, Commit: tip, Release: name, Reason: reason, Duration: d.now().Sub(start)})
		return Checked{Commit: tip, Outcome: OutcomeInterrupted}, nil
	}
	if storage {
		d.log().Warn("built, but the group's storage failed; deploying again with backoff",
			zap.String("commit", tip), zap.String("release", name), zap.Error(err))
		return Checked{Commit: tip, Outcome: OutcomeStorageFailed, Detail: err.Error()}, err
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
	d.fetchMu.Lock()
	defer d.fetchMu.Unlock()
	if err := d.initCache(ctx, g); err != nil {
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
	tip, err = d.fetch(ctx, g, branch, cfg.Depth)
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
	d.record(res)

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
		cacheDir:   d.repo,
		remote:     cfg.Remote,
		token:      cfg.Token,
		tokens:     cfg.TokenSource,
		sshKey:     cfg.SSHKey,
		knownHosts: cfg.KnownHosts,
		unset:      cfg.Unset,
	}
}

// releaseName names a release so that a person can tell when and which
// commit: 20261127T052300Z-1a2b3c4d5e6f.
func (d *Deployer) releaseName(at time.Time, commit string) string {
	base := at.UTC().Format("20060102T150405Z") + "-" + short(commit)
	name := base
	for i := 2; ; i++ {
		if _, err := os.Lstat(filepath.Join(d.path, releasesName, name)); errors.Is(err, fs.ErrNotExist) {
			return name
		}
		name = fmt.Sprintf("%s-%d", base, i)
	}
}
