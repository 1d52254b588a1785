// A deploy and a rollback of a target in a group (see cluster.go for the
// types and storage keys, cluster_watch.go, cluster_store.go and
// cluster_lease.go for the rest).

package deployer

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"go.uber.org/zap"
)

// How long one read of the group's live record, or one write of this node's
// record, may take; how often this node rewrites its record when nothing
// changed; every how many reads of live the nodes' records are read again
// when the group has converged (at every read when it has not).
const (
	storageTimeout  = 10 * time.Second
	nodeHeartbeat   = 5 * time.Minute
	nodesEveryTicks = 15
	storeRetryBase  = time.Second
	storeRetryMax   = 30 * time.Second
	rollbackTimeout = time.Minute
	// A build lease expires buildLease after its holder last renewed it;
	// the holder renews it every leaseRenew; a node waiting for another's
	// build looks again every claimRetry.
	buildLease = 15 * time.Second
	leaseRenew = 5 * time.Second
	claimRetry = time.Second
	// A node whose record is older than nodeStale (it rewrites it every
	// nodeHeartbeat while it runs) is down or gone: it is listed, marked
	// stale, and not counted in Converged.
	nodeStale = 3 * nodeHeartbeat
)

// groupState is what this node knows of its group; Deployer.mu guards it.
type groupState struct {
	name    string // the group this is about: a reload may change it
	live    *liveRecord
	readAt  time.Time
	err     string // last storage error; "" once a read works
	errors  int    // storage calls that failed since start
	nodes   []nodeRecord
	wrote   nodeRecord // this node's record as last written; zero: write it
	ticks   int
	refused string // the digest of an archive refused: not loaded again
	// refusedErr says why; the status shows it while live names that
	// archive, whatever storage reads do meanwhile.
	refusedErr string
	retry      Reason // a deploy that failed on storage, woken again when it works
	watching   bool
	// What watchTick knows (see cluster_pace.go): when live was last
	// read; the build lease as last read, and whether one was; whether
	// another node held it then (the watch is fast while it does), and
	// the watch's ticks since; whether a node's record says live may
	// have moved without the lease showing it.
	liveReadAt time.Time
	lease      buildingRecord
	leaseRead  bool
	fast       bool
	fastTicks  int
	lookAgain  bool
}

// storageError marks a deploy that could not read or write the group's
// storage: it is retried with backoff, and the tip is not marked failed.
type storageError struct{ err error }

func (e *storageError) Error() string { return e.err.Error() }

func (e *storageError) Unwrap() error { return e.err }

// storageFailed records a failed storage call.
func (d *Deployer) storageFailed(err error) {
	d.mu.Lock()
	d.group.errors++
	d.group.err = err.Error()
	d.mu.Unlock()
}

// deployGroupTip is deployTip for a target in a group: it follows the
// group when tip is live there (or rolled back from), and otherwise builds
// tip once for the whole group, under the group's build lock.
func (d *Deployer) deployGroupTip(ctx context.Context, cfg Config, g *git, reason Reason, tip, branch string, start time.Time) (Checked, error) {
	cl := cfg.Cluster
	gl, c, done, err := d.groupCheck(ctx, cfg, reason, tip)
	if done {
		return c, err
	}
	// The group says what is live and what was rolled back from; this
	// node what failed to build here and what the gate failed.
	f := d.localFacts(cfg, reason, tip)
	f.live, f.pinnedFrom = "", ""
	if gl != nil {
		f.live, f.pinnedFrom = gl.Commit, gl.PinnedFrom
	}
	if c, build, err := d.decide(ctx, cfg, f); !build {
		return c, err
	}
	d.setRunning(&Running{Reason: reason, Commit: tip, Since: start})
	var release func()
	for waited := false; ; waited = true {
		rel, holder, err := d.claimBuild(ctx, cl, tip)
		if err != nil {
			if d.ctx.Err() != nil {
				return Checked{Commit: tip, Outcome: OutcomeInterrupted}, nil
			}
			return Checked{Commit: tip, Outcome: OutcomeStorageFailed, Detail: err.Error()}, err
		}
		if rel != nil {
			release = rel
			break
		}
		if !waited {
			d.log().Info("another node builds for the group; waiting for it", zap.String("node", holder.Node),
				zap.String("host", holder.Host), zap.String("its_commit", holder.Commit), zap.Time("lease_expires", holder.Expires))
		}
		select {
		case <-ctx.Done():
			if d.ctx.Err() != nil {
				return Checked{Commit: tip, Outcome: OutcomeInterrupted}, nil
			}
			err := fmt.Errorf("waiting for node %s's build: %w", holder.Node, ctx.Err())
			return Checked{Commit: tip, Outcome: OutcomeStorageFailed, Detail: err.Error()}, &storageError{err}
		case <-time.After(claimRetry):
		}
		// That node may have put tip live meanwhile.
		if _, c, done, err := d.groupCheck(ctx, cfg, reason, tip); done {
			return c, err
		}
	}
	defer release()
	// Another node may have built tip just before this one claimed.
	if _, c, done, err := d.groupCheck(ctx, cfg, reason, tip); done {
		return c, err
	}
	// This node's live release is tip, built before the group had a
	// record of it: the group gets it as it is.
	live := liveRelease(d.path)
	d.mu.Lock()
	rec := d.st.find(live)
	var r releaseRecord
	if rec != nil {
		r = *rec
	}
	d.mu.Unlock()
	if rec != nil && r.Commit == tip {
		pub, err := publishedDir(filepath.Join(d.path, releasesName, r.Name), r.Publish)
		if err == nil {
			_, err = d.storeRelease(ctx, cfg, tip, r.Name, pub, "")
		}
		if err != nil {
			return Checked{Commit: tip, Outcome: OutcomeStorageFailed, Detail: err.Error()}, &storageError{err}
		}
		return Checked{Commit: tip, Outcome: OutcomeLive}, nil
	}
	return d.buildTip(ctx, cfg, g, reason, tip, branch, start, func(name, pub string) error {
		_, err := d.storeRelease(ctx, cfg, tip, name, pub, "")
		return err
	})
}

// groupCheck reads the group's live record and asks tipPolicy whether
// tip is live in the group, or was rolled back from there (this node's own
// failures and the gate are asked later, once): when it is, it makes this
// node serve the group's release, and done reports the wake handled. gl is
// the record read, nil when the group has none.
func (d *Deployer) groupCheck(ctx context.Context, cfg Config, reason Reason, tip string) (gl *liveRecord, c Checked, done bool, err error) {
	gl, err = d.readLive(ctx, cfg.Cluster)
	if err != nil {
		if d.ctx.Err() != nil {
			return nil, Checked{Commit: tip, Outcome: OutcomeInterrupted}, true, nil
		}
		return nil, Checked{Commit: tip, Outcome: OutcomeStorageFailed, Detail: err.Error()}, true, &storageError{err}
	}
	if gl == nil {
		return nil, Checked{}, false, nil
	}
	dec := tipPolicy(tipFacts{tip: tip, reason: reason, live: gl.Commit, pinnedFrom: gl.PinnedFrom})
	if dec.action == tipBuild {
		return gl, Checked{}, false, nil
	}
	c = Checked{Commit: tip, Outcome: dec.outcome, Detail: dec.detail}
	if dec.action != tipLive {
		d.log().Info("tip was rolled back from in the group; waiting for a new commit, a delivery or a manual deploy",
			zap.String("commit", tip), zap.String("reason", string(reason)))
	}
	if liveRelease(d.path) == gl.Release {
		return gl, c, true, nil
	}
	if err := d.follow(ctx, cfg, gl, reason); err != nil {
		var se *storageError
		switch {
		case d.ctx.Err() != nil:
			return gl, Checked{Commit: tip, Outcome: OutcomeInterrupted}, true, nil
		case errors.As(err, &se):
			return gl, Checked{Commit: tip, Outcome: OutcomeStorageFailed, Detail: err.Error()}, true, err
		}
		return gl, Checked{Commit: tip, Outcome: OutcomeFailed, Detail: err.Error()}, true, nil
	}
	if dec.action == tipLive {
		c.Outcome = OutcomeFollowed
	}
	return gl, c, true, nil
}
