package deployer

import (
	"context"
	"encoding/json"
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
	live    *GroupLive
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

// readLive reads the group's live record. It returns nil, nil when the
// group has none yet.
func (d *Deployer) readLive(ctx context.Context, cl *Cluster) (*GroupLive, error) {
	ctx, cancel := context.WithTimeout(ctx, storageTimeout)
	defer cancel()
	b, err := cl.Storage.Load(ctx, cl.liveKey())
	if errors.Is(err, fs.ErrNotExist) {
		err, b = nil, nil
	}
	if err != nil {
		err = fmt.Errorf("reading the group's live record: %w", err)
		d.storageFailed(err)
		return nil, err
	}
	var gl *GroupLive
	if b != nil {
		gl = new(GroupLive)
		if err := json.Unmarshal(b, gl); err != nil {
			err = fmt.Errorf("reading the group's live record: %w", err)
			d.storageFailed(err)
			return nil, err
		}
		if !validReleaseName(gl.Release) || !strings.HasPrefix(gl.Digest, "sha256:") {
			err := fmt.Errorf("reading the group's live record: release %q or digest %q is not valid", gl.Release, gl.Digest)
			d.storageFailed(err)
			return nil, err
		}
	}
	d.mu.Lock()
	if d.group.name != cl.Name {
		// Another group since a reload: what this node knew of the last
		// one, and wrote there, is not about this one.
		d.group = groupState{name: cl.Name, errors: d.group.errors, retry: d.group.retry}
	}
	d.group.live = gl
	d.group.readAt = d.now()
	d.group.err = ""
	retry := d.group.retry
	d.group.retry = ""
	d.mu.Unlock()
	if retry != "" {
		// Storage works again: the deploy it stopped need not wait for
		// its backoff.
		d.Wake(retry)
	}
	return gl, nil
}

// watchGroup reads the group's live record and follows it when this node
// serves another release; then it refreshes the nodes' records and writes
// its own when it changed. It runs on the worker goroutine, every
// Cluster.Poll and after each deploy.
func (d *Deployer) watchGroup() {
	cfg := d.config()
	cl := cfg.Cluster
	if cl == nil {
		return
	}
	gl, err := d.readLive(d.ctx, cl)
	if err != nil {
		if d.ctx.Err() == nil {
			d.log().Debug("reading the group's live record", zap.Error(err))
		}
		return
	}
	if gl != nil && gl.Release != liveRelease(d.path) {
		d.mu.Lock()
		refused := d.group.refused == gl.Digest
		d.mu.Unlock()
		if !refused {
			// Running while it follows, cleared with Checked set, as for
			// a deploy: a Status without Running shows how it ended.
			d.setRunning(&Running{Reason: ReasonGroup, Commit: gl.Commit, Release: gl.Release, Since: d.now()})
			ctx, cancel := context.WithTimeout(d.ctx, cfg.Timeout)
			err := d.follow(ctx, cfg, gl, ReasonGroup)
			cancel()
			if err != nil && d.ctx.Err() != nil {
				d.setRunning(nil)
				return // stopping
			}
			c := Checked{Reason: ReasonGroup, Commit: gl.Commit, Outcome: OutcomeFollowed, At: d.now()}
			var se *storageError
			switch {
			case errors.As(err, &se):
				c.Outcome, c.Detail = OutcomeStorageFailed, err.Error()
			case err != nil:
				c.Outcome, c.Detail = OutcomeFailed, err.Error()
			}
			d.mu.Lock()
			d.running = nil
			d.checks++
			c.Count = d.checks
			d.checked = &c
			d.mu.Unlock()
		}
	}
	d.syncNodes(cl, gl)
}

// syncNodes writes this node's record when it changed (or is due), and
// reads every node's record when the group has not converged, or every
// nodesEveryTicks reads.
func (d *Deployer) syncNodes(cl *Cluster, gl *GroupLive) {
	ctx, cancel := context.WithTimeout(d.ctx, storageTimeout)
	defer cancel()
	self := d.selfRecord(cl)
	d.mu.Lock()
	wrote := d.group.wrote
	d.group.ticks++
	refresh := d.group.ticks%nodesEveryTicks == 1
	if gl != nil {
		now := d.now()
		for _, n := range d.group.nodes {
			// A node that stopped writing its record (gone for good,
			// or down) does not keep every node reading all records.
			if n.Release != gl.Release && n.Node != cl.Node && now.Sub(n.Updated) <= nodeStale {
				refresh = true
			}
		}
	}
	d.mu.Unlock()
	if wrote.Release != self.Release || wrote.Commit != self.Commit || wrote.Host != self.Host ||
		self.Updated.Sub(wrote.Updated) >= nodeHeartbeat {
		b, _ := json.Marshal(self)
		if err := cl.Storage.Store(ctx, cl.nodeKey(cl.Node), b); err != nil {
			d.storageFailed(fmt.Errorf("writing this node's record: %w", err))
			return
		}
		d.mu.Lock()
		d.group.wrote = self
		d.mu.Unlock()
		refresh = true
	}
	if !refresh {
		return
	}
	keys, err := cl.Storage.List(ctx, cl.nodesKey(), false)
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	if err != nil {
		d.storageFailed(fmt.Errorf("listing the group's nodes: %w", err))
		return
	}
	var nodes []nodeRecord
	for _, k := range keys {
		b, err := cl.Storage.Load(ctx, k)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			d.storageFailed(fmt.Errorf("reading the group's nodes: %w", err))
			return
		}
		var n nodeRecord
		if json.Unmarshal(b, &n) == nil && n.Node != "" {
			nodes = append(nodes, n)
		}
	}
	d.mu.Lock()
	d.group.nodes = nodes
	d.mu.Unlock()
}

// selfRecord is what this node serves now.
func (d *Deployer) selfRecord(cl *Cluster) nodeRecord {
	live := liveRelease(d.path)
	d.mu.Lock()
	defer d.mu.Unlock()
	r := nodeRecord{Node: cl.Node, Host: cl.Host, Release: live, Since: d.liveAt, Updated: d.now()}
	if rec := d.st.find(live); rec != nil {
		r.Commit = rec.Commit
	}
	return r
}

// clusterStatus returns the group as this node knows it; d.mu is held.
func (d *Deployer) clusterStatus(cl *Cluster, live string, commit string) *ClusterStatus {
	g := &d.group
	if g.name != cl.Name {
		// Not read since a reload named another group (or ever).
		g = &groupState{err: g.err, errors: g.errors}
	}
	s := &ClusterStatus{Name: cl.Name, Node: cl.Node, Error: g.err, StorageErrors: g.errors, ReadAt: g.readAt, Nodes: []NodeStatus{}}
	if g.live != nil {
		l := *g.live
		s.Live = &l
		if s.Error == "" && g.refused == l.Digest {
			s.Error = g.refusedErr
		}
	}
	self := false
	for _, n := range g.nodes {
		ns := NodeStatus{Node: n.Node, Host: n.Host, Commit: n.Commit, Release: n.Release, Since: n.Since, Updated: n.Updated}
		if n.Node == cl.Node {
			// What this node serves now, whatever its record says yet.
			self = true
			ns.Self, ns.Host, ns.Commit, ns.Release, ns.Since = true, cl.Host, commit, live, d.liveAt
		}
		s.Nodes = append(s.Nodes, ns)
	}
	if !self {
		s.Nodes = append(s.Nodes, NodeStatus{Node: cl.Node, Host: cl.Host, Commit: commit, Release: live, Since: d.liveAt,
			Updated: g.wrote.Updated, Self: true})
	}
	slices.SortFunc(s.Nodes, func(a, b NodeStatus) int { return strings.Compare(a.Node, b.Node) })
	now := d.now()
	for i := range s.Nodes {
		s.Nodes[i].Stale = !s.Nodes[i].Self && now.Sub(s.Nodes[i].Updated) > nodeStale
	}
	if s.Live != nil {
		s.Converged = true
		for i := range s.Nodes {
			s.Nodes[i].Converged = s.Nodes[i].Release == s.Live.Release
			s.Converged = s.Converged && (s.Nodes[i].Converged || s.Nodes[i].Stale)
		}
		if live != s.Live.Release {
			if behind := now.Sub(s.Live.At); behind > 0 {
				s.Behind = Seconds(behind)
			}
		}
	}
	return s
}

// follow makes this node serve the group's live release gl: from the
// release on disk when this node has it, else from the group's archive,
// whose digest is checked before it is unpacked. It never builds.
func (d *Deployer) follow(ctx context.Context, cfg Config, gl *GroupLive, reason Reason) error {
	cl := cfg.Cluster
	start := d.now()
	err := d.followRelease(ctx, cl, gl)
	if err != nil {
		if ctx.Err() != nil && d.ctx.Err() != nil {
			return err // stopping
		}
		d.log().Error("following the group's live release", zap.String("release", gl.Release),
			zap.String("commit", gl.Commit), zap.Error(err))
		var se *storageError
		if !errors.As(err, &se) {
			// A broken archive is not loaded again until live changes.
			d.mu.Lock()
			d.group.refused = gl.Digest
			d.group.refusedErr = err.Error()
			d.mu.Unlock()
		}
		now := d.now()
		d.mu.Lock()
		d.last = &Result{Result: "error", Error: err.Error(), Duration: Seconds(now.Sub(start)), Reason: reason,
			Commit: gl.Commit, Release: gl.Release, At: now}
		d.mu.Unlock()
		return err
	}
	now := d.now()
	took := now.Sub(start)
	d.mu.Lock()
	d.last = &Result{Result: "ok", Duration: Seconds(took), Reason: ReasonGroup, Commit: gl.Commit, Release: gl.Release, At: now}
	// This node serves the release now: an earlier refusal of its
	// archive is history, not the group's state.
	d.group.refused, d.group.refusedErr = "", ""
	d.mu.Unlock()
	d.log().Info("followed the group", zap.String("commit", gl.Commit), zap.String("release", gl.Release),
		zap.String("built_by", gl.Node), zap.Duration("duration", took))
	d.notify(Event{Kind: EventFollowed, Commit: gl.Commit, Release: gl.Release, Reason: reason, Duration: took, At: now})
	d.prune(cfg)
	return nil
}

func (d *Deployer) followRelease(ctx context.Context, cl *Cluster, gl *GroupLive) error {
	dir := filepath.Join(d.path, releasesName, gl.Release)
	d.mu.Lock()
	rec := d.st.find(gl.Release)
	d.mu.Unlock()
	publish := ""
	if rec != nil {
		publish = rec.Publish
	} else {
		if want := cl.archiveKey(gl.Release); gl.Archive != want {
			return fmt.Errorf("the group's live record names archive %q, not %q", gl.Archive, want)
		}
		data, err := cl.Storage.Load(ctx, gl.Archive)
		if err != nil {
			err = fmt.Errorf("loading archive %s: %w", gl.Archive, err)
			d.storageFailed(err)
			return &storageError{err}
		}
		if got := digestOf(data); got != gl.Digest {
			return fmt.Errorf("archive %s refused: its digest is %s, the group's live record says %s", gl.Archive, got, gl.Digest)
		}
		// The folder may be this node's spare (a rollback to a release
		// this node had pruned): it stops being the spare before it is
		// replaced, or the next deploy would update a tree that is no
		// longer its commit's.
		d.diskMu.Lock()
		d.mu.Lock()
		var st *state
		if d.st.Spare != nil && d.st.Spare.Name == gl.Release {
			d.st.Spare = nil
			s := d.st
			st = &s
		}
		d.mu.Unlock()
		if st != nil {
			if err := st.save(d.path); err != nil {
				d.diskMu.Unlock()
				return err
			}
		}
		d.diskMu.Unlock()
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("removing a leftover release: %w", err)
		}
		if err := unpackTree(data, dir); err != nil {
			os.RemoveAll(dir)
			return fmt.Errorf("archive %s refused: %w", gl.Archive, err)
		}
	}
	pub, err := publishedDir(dir, publish)
	if err == nil {
		err = checkLinks(dir, pub, publish)
	}
	if err == nil && rec == nil {
		err = syncRelease(dir, nil)
	}
	if err != nil {
		if rec == nil {
			os.RemoveAll(dir)
		}
		return fmt.Errorf("release %s refused: %w", gl.Release, err)
	}
	d.diskMu.Lock()
	defer d.diskMu.Unlock()
	if err := switchCurrent(d.path, filepath.Join(releasesName, gl.Release, publish)); err != nil {
		return err
	}
	now := d.now()
	d.mu.Lock()
	if rec == nil {
		d.st.Releases = append(d.st.Releases, releaseRecord{Name: gl.Release, Commit: gl.Commit, At: now})
	}
	d.st.PinnedFrom = gl.PinnedFrom
	d.st.LastSuccess = now
	d.liveAt = now
	st := d.st
	d.mu.Unlock()
	if err := st.save(d.path); err != nil {
		d.log().Error("saving state", zap.Error(err))
	}
	return nil
}

// storeWithRetry stores value at key, retrying with backoff until it works
// or ctx ends: an outage of the storage does not fail a build.
func (d *Deployer) storeWithRetry(ctx context.Context, cl *Cluster, key string, value []byte) error {
	wait := storeRetryBase
	for {
		sctx, cancel := context.WithTimeout(ctx, max(storageTimeout, time.Duration(len(value)>>20)*time.Second))
		err := cl.Storage.Store(sctx, key, value)
		cancel()
		if err == nil {
			return nil
		}
		err = fmt.Errorf("storing %s: %w", key, err)
		d.storageFailed(err)
		d.log().Warn("storing in the group's storage; retrying", zap.Duration("in", wait), zap.Error(err))
		select {
		case <-ctx.Done():
			return &storageError{err}
		case <-time.After(wait):
		}
		wait = min(wait*2, storeRetryMax)
	}
}

// storeRelease packs the published folder pub of release name, stores it
// as the group's archive and then the group's live record, and prunes
// archives past Keep. The caller holds the group's build lock.
func (d *Deployer) storeRelease(ctx context.Context, cfg Config, commit, name, pub, pinnedFrom string) (*GroupLive, error) {
	cl := cfg.Cluster
	start := d.now()
	data, digest, err := packTree(pub)
	if err != nil {
		return nil, err
	}
	gl := &GroupLive{Commit: commit, Release: name, Archive: cl.archiveKey(name), Digest: digest,
		Size: int64(len(data)), Node: cl.Node, PinnedFrom: pinnedFrom}
	if err := d.storeWithRetry(ctx, cl, gl.Archive, data); err != nil {
		return nil, err
	}
	if err := d.storeLive(ctx, cl, gl); err != nil {
		return nil, err
	}
	d.log().Info("stored the release for the group", zap.String("release", name), zap.Int64("size", gl.Size),
		zap.String("digest", digest), zap.Duration("duration", d.now().Sub(start)))
	d.pruneArchives(ctx, cfg, name)
	return gl, nil
}

// storeLive stores gl as the group's live record.
func (d *Deployer) storeLive(ctx context.Context, cl *Cluster, gl *GroupLive) error {
	gl.At = d.now()
	b, err := json.Marshal(gl)
	if err != nil {
		return err
	}
	if err := d.storeWithRetry(ctx, cl, cl.liveKey(), b); err != nil {
		return err
	}
	d.mu.Lock()
	l := *gl
	d.group.live = &l
	d.mu.Unlock()
	return nil
}

// pruneArchives removes the group's archives past Keep, never live's: it
// keeps live's, those of the newest releases this node keeps, and then the
// newest by name (names begin with the time of the build, to the second).
func (d *Deployer) pruneArchives(ctx context.Context, cfg Config, live string) {
	cl := cfg.Cluster
	keys, err := cl.Storage.List(ctx, cl.archivesKey(), false)
	if err != nil {
		d.log().Warn("pruning the group's archives", zap.Error(err))
		return
	}
	keep := map[string]bool{live: true}
	d.mu.Lock()
	for i := len(d.st.Releases) - 1; i >= 0 && len(keep) < cfg.Keep; i-- {
		keep[d.st.Releases[i].Name] = true
	}
	d.mu.Unlock()
	var names []string
	for _, k := range keys {
		name, ok := strings.CutSuffix(k[strings.LastIndexByte(k, '/')+1:], archiveExt)
		if ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for i := len(names) - 1; i >= 0 && len(keep) < cfg.Keep; i-- {
		keep[names[i]] = true
	}
	var errs []error
	for _, name := range names {
		if !keep[name] {
			errs = append(errs, cl.Storage.Delete(ctx, cl.archiveKey(name)))
		}
	}
	if err := errors.Join(errs...); err != nil {
		d.log().Warn("pruning the group's archives", zap.Error(err))
	}
}

// buildingRecord is the group's build lease (storage key `building`): the
// node that builds, and until when its claim holds unless renewed.
type buildingRecord struct {
	Node    string    `json:"node"`
	Host    string    `json:"host"`
	Commit  string    `json:"commit"`
	Since   time.Time `json:"since"`
	Expires time.Time `json:"expires"`
}

// claimBuild tries once to claim the group's build for this node. Under the
// storage's lock (`build`), held only for this test-and-set, it reads the
// lease (`building`): when no other node holds one that has not expired, it
// writes its own, renewed every leaseRenew until the returned release is
// called (which deletes it). Otherwise it returns the other node's lease.
//
// The storage's lock is not held for the whole build because its expiry is
// the storage module's own business: certmagic's file_system renews a lock
// from a goroutine that outlives the Unlock by up to 5 s and renews
// whatever lock file has that name meanwhile, so a builder killed with a
// lock taken just after another node released it would leave a lock that
// never goes stale. A lease that only its holder renews expires buildLease
// after its holder died, whatever the storage.
func (d *Deployer) claimBuild(ctx context.Context, cl *Cluster, tip string) (func(), *buildingRecord, error) {
	lctx, cancel := context.WithTimeout(ctx, storageTimeout)
	defer cancel()
	if err := cl.Storage.Lock(lctx, cl.lockName()); err != nil {
		err = fmt.Errorf("taking the group's build lock: %w", err)
		if d.ctx.Err() == nil {
			d.storageFailed(err)
		}
		return nil, nil, &storageError{err}
	}
	unlocked := false
	unlock := func() {
		if unlocked {
			return
		}
		unlocked = true
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storageTimeout)
		defer cancel()
		if err := cl.Storage.Unlock(uctx, cl.lockName()); err != nil {
			d.storageFailed(fmt.Errorf("releasing the group's build lock: %w", err))
			d.log().Warn("releasing the group's build lock; it expires on its own", zap.Error(err))
		}
	}
	defer unlock()
	b, err := cl.Storage.Load(lctx, cl.buildingKey())
	var cur buildingRecord
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		err = fmt.Errorf("reading the group's build lease: %w", err)
		d.storageFailed(err)
		return nil, nil, &storageError{err}
	default:
		json.Unmarshal(b, &cur) // unreadable: nobody's
	}
	now := d.now()
	if cur.Node != "" && cur.Node != cl.Node && now.Before(cur.Expires) {
		return nil, &cur, nil
	}
	lease := buildingRecord{Node: cl.Node, Host: cl.Host, Commit: tip, Since: now, Expires: now.Add(buildLease)}
	b, _ = json.Marshal(lease)
	if err := cl.Storage.Store(lctx, cl.buildingKey(), b); err != nil {
		err = fmt.Errorf("writing the group's build lease: %w", err)
		d.storageFailed(err)
		return nil, nil, &storageError{err}
	}
	unlock()

	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(leaseRenew)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			sctx, cancel := context.WithTimeout(context.Background(), storageTimeout)
			mine, err := d.holdsLease(sctx, cl, lease)
			if err == nil && !mine {
				// Another node took over a lease this one let
				// expire (a stall, slow storage): never overwrite
				// its lease.
				cancel()
				d.log().Warn("the group's build lease expired and another node took it over")
				return
			}
			lease.Expires = d.now().Add(buildLease)
			b, _ := json.Marshal(lease)
			if err == nil {
				err = cl.Storage.Store(sctx, cl.buildingKey(), b)
			}
			cancel()
			if err != nil {
				d.storageFailed(fmt.Errorf("renewing the group's build lease: %w", err))
			}
		}
	}()
	release := func() {
		close(stop)
		<-done
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storageTimeout)
		defer cancel()
		if mine, err := d.holdsLease(rctx, cl, lease); err != nil || !mine {
			return // another node's lease now, or unreadable: it expires on its own
		}
		if err := cl.Storage.Delete(rctx, cl.buildingKey()); err != nil && !errors.Is(err, fs.ErrNotExist) {
			d.storageFailed(fmt.Errorf("ending the group's build lease: %w", err))
			d.log().Warn("ending the group's build lease; it expires on its own", zap.Error(err))
		}
	}
	return release, nil, nil
}

// holdsLease reports whether the group's build lease in storage is still
// lease, the one this node took (same node, same start). Storage has no
// compare-and-set, so a takeover between this read and the caller's write
// remains possible, in a window of one storage call instead of a whole
// renewal period.
func (d *Deployer) holdsLease(ctx context.Context, cl *Cluster, lease buildingRecord) (bool, error) {
	b, err := cl.Storage.Load(ctx, cl.buildingKey())
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var cur buildingRecord
	if json.Unmarshal(b, &cur) != nil {
		return false, nil
	}
	return cur.Node == lease.Node && cur.Since.Equal(lease.Since), nil
}

// deployGroupTip is deployTip for a target in a group: it follows the
// group when tip is live there (or rolled back from), and otherwise builds
// tip once for the whole group, under the group's build lock.
func (d *Deployer) deployGroupTip(ctx context.Context, cfg Config, g *git, reason Reason, tip, branch string, start time.Time) (Checked, error) {
	cl := cfg.Cluster
	if c, done, err := d.groupCheck(ctx, cfg, reason, tip); done {
		return c, err
	}
	d.mu.Lock()
	failed := d.st.FailedCommit
	d.mu.Unlock()
	if !reason.explicit() && tip == failed {
		d.log().Info("tip's build failed before; waiting for a new commit, a delivery or a manual deploy",
			zap.String("commit", tip), zap.String("reason", string(reason)))
		return Checked{Commit: tip, Outcome: OutcomeWaiting, Detail: "failed before"}, nil
	}
	if cfg.Gate != nil {
		if c, pass, err := d.gate(ctx, cfg, reason, tip); !pass {
			return c, err
		}
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
		if c, done, err := d.groupCheck(ctx, cfg, reason, tip); done {
			return c, err
		}
	}
	defer release()
	// Another node may have built tip just before this one claimed.
	if c, done, err := d.groupCheck(ctx, cfg, reason, tip); done {
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

// groupCheck reads the group's live record and, when tip is live in the
// group, or was rolled back from and reason is not explicit, makes this
// node serve the group's release: done then reports the wake handled.
func (d *Deployer) groupCheck(ctx context.Context, cfg Config, reason Reason, tip string) (c Checked, done bool, err error) {
	gl, err := d.readLive(ctx, cfg.Cluster)
	if err != nil {
		if d.ctx.Err() != nil {
			return Checked{Commit: tip, Outcome: OutcomeInterrupted}, true, nil
		}
		return Checked{Commit: tip, Outcome: OutcomeStorageFailed, Detail: err.Error()}, true, &storageError{err}
	}
	if gl == nil {
		return Checked{}, false, nil
	}
	pinned := gl.PinnedFrom == tip && gl.Commit != tip && !reason.explicit()
	if gl.Commit != tip && !pinned {
		return Checked{}, false, nil
	}
	c = Checked{Commit: tip, Outcome: OutcomeLive}
	if pinned {
		d.log().Info("tip was rolled back from in the group; waiting for a new commit, a delivery or a manual deploy",
			zap.String("commit", tip), zap.String("reason", string(reason)))
		c.Outcome, c.Detail = OutcomeWaiting, "rolled back from"
	}
	if liveRelease(d.path) == gl.Release {
		return c, true, nil
	}
	if err := d.follow(ctx, cfg, gl, reason); err != nil {
		var se *storageError
		switch {
		case d.ctx.Err() != nil:
			return Checked{Commit: tip, Outcome: OutcomeInterrupted}, true, nil
		case errors.As(err, &se):
			return Checked{Commit: tip, Outcome: OutcomeStorageFailed, Detail: err.Error()}, true, err
		}
		return Checked{Commit: tip, Outcome: OutcomeFailed, Detail: err.Error()}, true, nil
	}
	if !pinned {
		c.Outcome = OutcomeFollowed
	}
	return c, true, nil
}

// rollbackGroup moves the group's live record to target, a release of this
// node, before this node switches to it: every node follows. This node's
// release is packed and stored again as the group's archive of target.
func (d *Deployer) rollbackGroup(cfg Config, target releaseRecord) error {
	cl := cfg.Cluster
	if target.Commit == "" {
		return fmt.Errorf("rolling back the group to %s: its commit is unknown", target.Name)
	}
	// A rollback is a request that waits for its answer: storage that
	// does not answer fails it rather than holding it for a deploy's
	// timeout.
	ctx, cancel := context.WithTimeout(d.ctx, min(cfg.Timeout, rollbackTimeout))
	defer cancel()
	gl, err := d.readLive(ctx, cl)
	if err != nil {
		return fmt.Errorf("rolling back the group: %w", err)
	}
	pinned := ""
	if gl != nil {
		pinned = gl.PinnedFrom
		if pinned == "" && gl.Commit != target.Commit {
			pinned = gl.Commit
		}
	}
	// The archive is packed again from this node's own release, never
	// taken from storage as it is: its digest must come from bytes this
	// node checked, or a corrupted archive in storage would pass every
	// follower's check after a rollback.
	pub, err := publishedDir(filepath.Join(d.path, releasesName, target.Name), target.Publish)
	if err == nil {
		_, err = d.storeRelease(ctx, cfg, target.Commit, target.Name, pub, pinned)
	}
	if err != nil {
		return fmt.Errorf("rolling back the group: %w", err)
	}
	return nil
}
