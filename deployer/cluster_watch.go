// What a node of a group does on its own: read the group's live record,
// keep its own record, and follow the group's release from its archive.

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

	"go.uber.org/zap"
)

// readLive reads the group's live record. It returns nil, nil when the
// group has none yet.
func (d *Deployer) readLive(ctx context.Context, cl *Cluster) (*liveRecord, error) {
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
	var gl *liveRecord
	if b != nil {
		gl = new(liveRecord)
		if err := decodeRecord(b, gl, &gl.Version); err != nil {
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
	d.groupAnswered(cl, func(g *groupState) {
		g.live = gl
		g.liveReadAt = g.readAt
	})
	return gl, nil
}

// groupAnswered records a read of group cl's storage that worked, what
// it learnt set by learn (under d.mu): this node knows the group's live
// record as of now.
func (d *Deployer) groupAnswered(cl *Cluster, learn func(*groupState)) {
	d.mu.Lock()
	if d.group.name != cl.Name {
		// Another group since a reload: what this node knew of the last
		// one, and wrote there, is not about this one.
		d.group = groupState{name: cl.Name, errors: d.group.errors, retry: d.group.retry}
	}
	d.group.readAt = d.now()
	d.group.err = ""
	learn(&d.group)
	retry := d.group.retry
	d.group.retry = ""
	d.mu.Unlock()
	if retry != "" {
		// Storage works again: the deploy it stopped need not wait for
		// its backoff.
		d.Wake(retry)
	}
}

// watchGroup reads the group's live record and follows it when this node
// serves another release; then it refreshes the nodes' records and writes
// its own when it changed. It runs on the worker goroutine after each
// deploy and when watchTick says live must be read.
func (d *Deployer) watchGroup() {
	cfg := d.config()
	cl := cfg.Cluster
	if cl == nil {
		return
	}
	d.fault(FaultWatch, "")
	gl, err := d.readLive(d.ctx, cl)
	if err != nil {
		if d.ctx.Err() == nil {
			d.log().Debug("reading the group's live record", zap.Error(err))
		}
		return
	}
	d.followGroup(cfg, gl)
	d.syncNodes(cl, gl)
}

// followGroup makes this node serve gl's release when it serves another
// (and gl's archive was not refused); followed reports whether it tried.
func (d *Deployer) followGroup(cfg Config, gl *liveRecord) (followed bool) {
	if gl == nil || gl.Release == liveRelease(d.path) {
		return false
	}
	d.mu.Lock()
	refused := d.group.refused == gl.Digest
	d.mu.Unlock()
	if refused {
		return false
	}
	// Running while it follows, cleared with Checked set, as for a
	// deploy: a Status without Running shows how it ended.
	d.setRunning(&Running{Reason: ReasonGroup, Commit: gl.Commit, Release: gl.Release, Since: d.now()})
	ctx, cancel := context.WithTimeout(d.ctx, cfg.Timeout)
	err := d.follow(ctx, cfg, gl, ReasonGroup)
	cancel()
	if err != nil && d.ctx.Err() != nil {
		d.setRunning(nil)
		return true // stopping
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
	return true
}

// syncNodes writes this node's record when it changed (or is due), and
// reads every node's record when the group has not converged, or every
// nodesEveryTicks reads.
func (d *Deployer) syncNodes(cl *Cluster, gl *liveRecord) {
	defer d.watchPreviews(d.config()) // with previews: one read of the group's previews
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
		if err := decodeRecord(b, &n, &n.Version); err != nil {
			// Unreadable, or a newer node's: not listed.
			d.log().Debug("reading a node's record", zap.String("key", k), zap.Error(err))
			continue
		}
		if n.Node != "" {
			nodes = append(nodes, n)
		}
	}
	d.mu.Lock()
	d.group.nodes = nodes
	now := d.now()
	for _, n := range nodes {
		// A node that began serving another release since live was last
		// read: live may have moved without the lease showing it (a
		// node of an older version).
		if n.Node != cl.Node && n.Release != self.Release && n.Updated.After(d.group.liveReadAt) && now.Sub(n.Updated) <= nodeStale {
			d.group.lookAgain = true
		}
	}
	d.mu.Unlock()
}

// selfRecord is what this node serves now.
func (d *Deployer) selfRecord(cl *Cluster) nodeRecord {
	live := liveRelease(d.path)
	d.mu.Lock()
	defer d.mu.Unlock()
	r := nodeRecord{Version: recordVersion, Node: cl.Node, Host: cl.Host, Release: live, Since: d.liveAt, Updated: d.now()}
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
		s.Live = g.live.status()
		if s.Error == "" && g.refused == g.live.Digest {
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
// unpacked part by part, each part's digest checked before it is unpacked
// and the whole's before the release goes live. It never builds.
func (d *Deployer) follow(ctx context.Context, cfg Config, gl *liveRecord, reason Reason) error {
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
		res := d.last
		d.mu.Unlock()
		d.record(res)
		return err
	}
	now := d.now()
	took := now.Sub(start)
	d.mu.Lock()
	d.last = &Result{Result: "ok", Duration: Seconds(took), Reason: ReasonGroup, Commit: gl.Commit, Release: gl.Release, At: now}
	// This node serves the release now: an earlier refusal of its
	// archive is history, not the group's state.
	d.group.refused, d.group.refusedErr = "", ""
	res := d.last
	d.mu.Unlock()
	d.record(res)
	d.log().Info("followed the group", zap.String("commit", gl.Commit), zap.String("release", gl.Release),
		zap.String("built_by", gl.Node), zap.Duration("duration", took))
	d.notify(Event{Kind: EventFollowed, Commit: gl.Commit, Release: gl.Release, Reason: reason, Duration: took, At: now})
	d.prune(cfg)
	return nil
}

// archiveParts returns the parts of gl's archive, checked against the
// keys of gl's release: a record without parts, written before archives
// were stored in parts, has the whole archive at gl.Archive.
func (c *Cluster) archiveParts(gl *liveRecord) ([]ArchivePart, error) {
	if want := c.archiveKey(gl.Release); gl.Archive != want {
		return nil, fmt.Errorf("the group's live record names archive %q, not %q", gl.Archive, want)
	}
	if gl.Unpacked < 0 || gl.Unpacked > maxUnpacked {
		return nil, fmt.Errorf("the group's live record says archive %s holds %d bytes, more than the %d an archive may hold",
			gl.Archive, gl.Unpacked, int64(maxUnpacked))
	}
	if len(gl.Parts) == 0 {
		return []ArchivePart{{Key: gl.Archive, Size: gl.Size, Digest: gl.Digest}}, nil
	}
	if len(gl.Parts) > maxArchiveParts {
		return nil, fmt.Errorf("the group's live record lists %d parts of archive %s, more than %d", len(gl.Parts), gl.Archive, maxArchiveParts)
	}
	var size int64
	for i, p := range gl.Parts {
		if want := c.partKey(gl.Release, i); p.Key != want {
			return nil, fmt.Errorf("the group's live record names part %d of archive %s %q, not %q", i, gl.Archive, p.Key, want)
		}
		if p.Size <= 0 || p.Size > maxArchivePart || !strings.HasPrefix(p.Digest, "sha256:") {
			return nil, fmt.Errorf("the group's live record gives part %s a size of %d bytes and digest %q: not valid", p.Key, p.Size, p.Digest)
		}
		size += p.Size
	}
	if size != gl.Size {
		return nil, fmt.Errorf("the group's live record says archive %s has %d bytes, its parts %d", gl.Archive, gl.Size, size)
	}
	return gl.Parts, nil
}

func (d *Deployer) followRelease(ctx context.Context, cl *Cluster, gl *liveRecord) error {
	dir := filepath.Join(d.path, releasesName, gl.Release)
	d.mu.Lock()
	rec := d.st.find(gl.Release)
	d.mu.Unlock()
	publish := ""
	if rec != nil {
		publish = rec.Publish
	} else {
		parts, err := cl.archiveParts(gl)
		if err != nil {
			return err
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
		// Part by part, each checked before the unpacker reads it, the
		// next one loading while the unpacker writes one out, into the
		// release's own folder, which goes live only once the whole
		// archive matched its digest.
		get, stop := loadAhead(parts, func(key string) ([]byte, error) {
			return cl.Storage.Load(ctx, key)
		})
		defer stop()
		pr := newPartsReader(parts, get)
		err = unpackTree(pr, dir, unpackLimits{declared: gl.Unpacked, free: freeSpace(filepath.Dir(dir))})
		if pr.err != nil {
			err = pr.err // what made the unpacker fail
		}
		if err == nil {
			err = pr.finish(gl.Digest, gl.Size)
		}
		if err != nil {
			os.RemoveAll(dir)
			if pr.loadFailed {
				err = fmt.Errorf("loading archive %s: %w", gl.Archive, err)
				d.storageFailed(err)
				return &storageError{err}
			}
			return fmt.Errorf("archive %s refused: %w", gl.Archive, err)
		}
	}
	pub, err := publishedDir(dir, publish)
	if err == nil {
		_, _, err = checkServed(dir, pub, publish, false)
	}
	if err == nil && rec == nil {
		err = d.syncRelease(dir, nil)
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
