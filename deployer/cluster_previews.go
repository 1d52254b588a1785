// Previews shared through the group (Config.Cluster with Config.Previews):
// one build per preview commit in the whole group, every node serves the
// same bytes at the preview's host, and a preview removed on one node is
// removed on all of them.
//
// The group's previews are one record, `previews-live` (previewIndex): for
// each preview, the release it serves and its archive (a liveRecord, as
// the site's `live`), or a tombstone once it was removed. Every node reads
// it on the group's watch tick (one storage read more per tick, only with
// previews on) and, when it changed, its previews' worker follows it:
// unpacks a preview's archive into its own folder and switches its
// current, or removes the preview. A preview's storage keys are those of
// a group of its own, `previews/<number>/` under the group's: its build
// lease (`building`, claimed as the site's is, so two nodes woken for one
// pull request build its head once) and its archives, one kept.
// The record is rewritten under the storage's lock `previews-lock`, held
// only for that read-modify-write.

package deployer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// tombstoneKeep is how long the group's record of previews keeps a removed
// preview: a build of it that ends meanwhile on another node is not
// shared (see sharePreview). A node that misses the tombstone removes a
// preview it had from the group once the record no longer lists it.
const tombstoneKeep = 24 * time.Hour

// previewIndex is the group's previews as stored (key `previews-live`).
type previewIndex struct {
	Version  int            `json:"version"`
	Previews []groupPreview `json:"previews"`
}

// groupPreview is one preview of the group.
type groupPreview struct {
	Number int    `json:"number"`
	Host   string `json:"host"`
	// Removed: the preview is gone, since At; Release is nil.
	Removed bool `json:"removed,omitempty"`
	// At is when the preview was built, or removed.
	At time.Time `json:"at"`
	// Release is what the preview serves, and its archive under the
	// preview's keys (previews/<number>/archives/).
	Release *liveRecord `json:"release,omitempty"`
}

func (c *Cluster) previewsKey() string      { return c.prefix() + "previews-live" }
func (c *Cluster) previewsLockName() string { return c.prefix() + "previews-lock" }

// preview is the group of number's preview: its keys are under
// previews/<number>/ of c's.
func (c *Cluster) preview(number int) *Cluster {
	s := *c
	s.Name = c.Name + "/previews/" + strconv.Itoa(number)
	return &s
}

// valid reports whether e, read from storage, names a preview of pc and a
// release that can be unpacked into its folder (release names become
// paths; archiveParts checks the archive's keys).
func (e *groupPreview) valid(pc *Previews) error {
	if e.Number <= 0 || e.Release == nil {
		return fmt.Errorf("preview %d: no number or no release", e.Number)
	}
	if host := previewHost(pc, e.Number); e.Host != host {
		return fmt.Errorf("preview %d: host %q is not %q, the host this node's template makes", e.Number, e.Host, host)
	}
	if !validReleaseName(e.Release.Release) || !strings.HasPrefix(e.Release.Digest, "sha256:") {
		return fmt.Errorf("preview %d: release %q or digest %q is not valid", e.Number, e.Release.Release, e.Release.Digest)
	}
	return nil
}

// find returns number's entry, or nil.
func (x *previewIndex) find(number int) *groupPreview {
	for i := range x.Previews {
		if x.Previews[i].Number == number {
			return &x.Previews[i]
		}
	}
	return nil
}

// decodePreviewIndex reads the stored record b, nil meaning none.
func decodePreviewIndex(b []byte) (*previewIndex, error) {
	x := &previewIndex{}
	if b == nil {
		return x, nil
	}
	if err := decodeRecord(b, x, &x.Version); err != nil {
		return nil, fmt.Errorf("reading the group's previews: %w", err)
	}
	return x, nil
}

// loadPreviewIndex reads the group's previews: the record's bytes, nil
// when there is none.
func loadPreviewIndex(ctx context.Context, cl *Cluster) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, storageTimeout)
	defer cancel()
	b, err := cl.Storage.Load(ctx, cl.previewsKey())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// watchPreviews reads the group's previews on the group's watch tick and,
// when the record changed since it was last followed, wakes the previews'
// worker to follow it.
func (d *Deployer) watchPreviews(cfg Config) {
	cl := cfg.Cluster
	if cl == nil || cfg.Previews == nil {
		return
	}
	b, err := loadPreviewIndex(d.ctx, cl)
	if err != nil {
		if d.ctx.Err() == nil {
			d.storageFailed(fmt.Errorf("reading the group's previews: %w", err))
		}
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.previews.groupRaw != nil && bytes.Equal(b, d.previews.groupRaw) {
		return
	}
	if b == nil {
		b = []byte{} // read: no record, not "not read yet"
	}
	d.previews.groupRaw, d.previews.groupNew = b, true
	d.wakePreviews()
}

// syncGroupPreviews makes this node's previews what the group's record,
// as last read, says: a preview of the group is unpacked from its archive
// when this node serves another release of it; one the group removed (a
// tombstone newer than this node's last update of it, or no entry for a
// preview that this node had from the group) is removed here. A preview
// this node was woken for and has not shared yet stays. It runs on the
// previews' worker.
func (d *Deployer) syncGroupPreviews() {
	cfg := d.config()
	cl, pc := cfg.Cluster, cfg.Previews
	d.mu.Lock()
	raw, fresh := d.previews.groupRaw, d.previews.groupNew
	d.previews.groupNew = false
	d.mu.Unlock()
	if cl == nil || pc == nil || !fresh {
		return
	}
	x, err := decodePreviewIndex(nonEmpty(raw))
	if err != nil {
		d.log().Warn("following the group's previews", zap.Error(err))
		return
	}
	retry := false
	for _, e := range x.Previews {
		if e.Removed || d.ctx.Err() != nil {
			continue
		}
		if err := e.valid(pc); err != nil {
			d.log().Warn("not following the group's record of a preview", zap.Int("number", e.Number), zap.Error(err))
			continue
		}
		var se *storageError
		if err := d.followPreview(cfg, e); errors.As(err, &se) {
			retry = true
		}
	}
	d.mu.Lock()
	var gone []int
	for n, p := range d.previews.byNumber {
		e := x.find(n)
		if e == nil && p.rec.Group || e != nil && e.Removed && e.At.After(p.rec.Updated) {
			gone = append(gone, n)
		}
	}
	if retry {
		// Storage failed: the next tick follows the record again.
		d.previews.groupRaw = nil
	}
	d.mu.Unlock()
	slices.Sort(gone)
	for _, n := range gone {
		if d.removePreview(n, false) == nil {
			d.log().Info("removed a preview the group removed", zap.Int("number", n))
		}
	}
}

func nonEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// followPreview makes this node serve e's release of its preview, unless
// it does: from the group's archive, as a node follows the site's live.
func (d *Deployer) followPreview(cfg Config, e groupPreview) error {
	d.mu.Lock()
	p := d.previews.byNumber[e.Number]
	if p == nil {
		p = &preview{rec: previewRecord{Number: e.Number, Host: e.Host, State: PreviewQueued, Updated: e.At}}
		if d.previews.byNumber == nil {
			d.previews.byNumber = map[int]*preview{}
		}
		d.previews.byNumber[e.Number] = p
	}
	d.mu.Unlock()
	p.busy.Lock()
	defer p.busy.Unlock()
	if p.removed {
		return nil
	}
	if err := d.previewChild(p); err != nil {
		return err
	}
	if liveRelease(p.child.path) == e.Release.Release {
		d.setPreview(p, func(r *previewRecord) {
			r.Group = true
			if r.Live != e.Release.Commit {
				r.Head, r.Live, r.State, r.Error = e.Release.Commit, e.Release.Commit, PreviewLive, ""
			}
		})
		return nil
	}
	ctx, cancel := context.WithTimeout(d.ctx, cfg.Timeout)
	defer cancel()
	return d.followPreviewRelease(ctx, cfg, p, e)
}

// followPreviewRelease unpacks e's release into p's folder and switches
// its current; p.busy is held.
func (d *Deployer) followPreviewRelease(ctx context.Context, cfg Config, p *preview, e groupPreview) error {
	start := d.now()
	d.mu.Lock()
	rec := p.rec
	d.mu.Unlock()
	pcfg := previewConfig(cfg, rec, rec.Number)
	child := p.child
	child.mu.Lock()
	child.cfg = pcfg
	child.mu.Unlock()
	err := child.followRelease(ctx, cfg.Cluster.preview(rec.Number), e.Release)
	if err != nil {
		if d.ctx.Err() != nil {
			return err
		}
		d.log().Warn("following the group's preview", zap.Int("number", rec.Number), zap.String("release", e.Release.Release), zap.Error(err))
		d.setPreview(p, func(r *previewRecord) { r.State, r.Error = PreviewError, "following the group: "+err.Error() })
		return err
	}
	child.prune(pcfg)
	d.log().Info("followed the group's preview", zap.Int("number", rec.Number), zap.String("commit", e.Release.Commit),
		zap.String("release", e.Release.Release), zap.String("built_by", e.Release.Node), zap.Duration("duration", d.now().Sub(start)))
	d.setPreview(p, func(r *previewRecord) {
		r.Head, r.Live, r.State, r.Error, r.Group, r.Updated = e.Release.Commit, e.Release.Commit, PreviewLive, "", true, e.At
	})
	return nil
}

// previewChild makes p's target when p has none yet.
func (d *Deployer) previewChild(p *preview) error {
	if p.child != nil {
		return nil
	}
	child := d.previewTarget(p.rec.Host)
	if err := os.MkdirAll(filepath.Join(child.path, releasesName), 0o755); err != nil {
		d.setPreview(p, func(r *previewRecord) { r.State, r.Error = PreviewError, err.Error() })
		return err
	}
	child.recoverFolder(false)
	p.child = child
	return nil
}

// groupPreviewLive reads the group's record of number's preview: when it
// serves head, this node follows it (unless it serves it already) and
// done reports the preview handled, with no build. p.busy is held.
func (d *Deployer) groupPreviewLive(ctx context.Context, cfg Config, p *preview, head string) (done bool, err error) {
	b, err := loadPreviewIndex(ctx, cfg.Cluster)
	if err != nil {
		err = fmt.Errorf("reading the group's previews: %w", err)
		d.storageFailed(err)
		return false, &storageError{err}
	}
	x, err := decodePreviewIndex(b)
	if err != nil {
		return false, err
	}
	e := x.find(p.rec.Number)
	if e == nil || e.Removed || e.valid(cfg.Previews) != nil || e.Release.Commit != head || e.Host != p.rec.Host {
		return false, nil
	}
	if liveRelease(p.child.path) == e.Release.Release {
		d.setPreview(p, func(r *previewRecord) {
			r.Head, r.Live, r.State, r.Error, r.Group = head, head, PreviewLive, "", true
		})
		return true, nil
	}
	return true, d.followPreviewRelease(ctx, cfg, p, *e)
}

// claimPreview waits until this node holds the build lease of number's
// preview, or the group serves head there (done). p.busy is held.
func (d *Deployer) claimPreview(ctx context.Context, cfg Config, p *preview, head string) (release func(), done bool, err error) {
	sub := cfg.Cluster.preview(p.rec.Number)
	for waited := false; ; waited = true {
		release, holder, err := d.claimBuild(ctx, sub, head)
		if err != nil {
			return nil, false, err
		}
		if release != nil {
			// Another node may have shared head just before.
			if done, err := d.groupPreviewLive(ctx, cfg, p, head); done || err != nil {
				release()
				return nil, done, err
			}
			return release, false, nil
		}
		if !waited {
			d.log().Info("another node builds this preview for the group; waiting for it", zap.Int("number", p.rec.Number),
				zap.String("node", holder.Node), zap.String("its_commit", holder.Commit))
		}
		select {
		case <-ctx.Done():
			return nil, false, ctx.Err()
		case <-time.After(claimRetry):
		}
		if done, err := d.groupPreviewLive(ctx, cfg, p, head); done || err != nil {
			return nil, done, err
		}
	}
}

// sharePreview stores the group's record of p's release gl (its archive
// already stored), unless the group removed the preview since p was last
// woken: then the archive goes, and so does the preview here. The
// preview's older archives are deleted.
func (d *Deployer) sharePreview(ctx context.Context, cl *Cluster, p *preview, gl *liveRecord) error {
	d.mu.Lock()
	woken := p.rec.Updated
	n, host := p.rec.Number, p.rec.Host
	d.mu.Unlock()
	gl.At = d.now()
	removed := false
	err := d.updatePreviewIndex(ctx, cl, func(x *previewIndex) {
		if e := x.find(n); e != nil && e.Removed && e.At.After(woken) {
			removed = true
			return
		}
		x.Previews = slices.DeleteFunc(x.Previews, func(e groupPreview) bool { return e.Number == n })
		x.Previews = append(x.Previews, groupPreview{Number: n, Host: host, At: gl.At, Release: gl})
	})
	if err != nil {
		return err
	}
	keep := gl.Release
	if removed {
		keep = ""
	}
	d.dropPreviewArchives(ctx, cl.preview(n), keep)
	if removed {
		d.log().Info("the group removed this preview while it was built here: not shared", zap.Int("number", n))
		go d.removePreview(n, false)
		return nil
	}
	d.setPreview(p, func(r *previewRecord) { r.Group = true })
	return nil
}

// unsharePreview writes the tombstone of number's preview in the group's
// record and deletes its archives.
func (d *Deployer) unsharePreview(cl *Cluster, number int, host string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(d.ctx), 3*storageTimeout)
	defer cancel()
	err := d.updatePreviewIndex(ctx, cl, func(x *previewIndex) {
		x.Previews = slices.DeleteFunc(x.Previews, func(e groupPreview) bool { return e.Number == number })
		x.Previews = append(x.Previews, groupPreview{Number: number, Host: host, Removed: true, At: d.now()})
	})
	if err != nil {
		d.log().Warn("removing a preview from the group; the other nodes keep it until its ttl", zap.Int("number", number), zap.Error(err))
	}
	d.dropPreviewArchives(ctx, cl.preview(number), "")
}

// updatePreviewIndex rewrites the group's record of previews with fn,
// under the storage's lock, dropping tombstones past tombstoneKeep.
func (d *Deployer) updatePreviewIndex(ctx context.Context, cl *Cluster, fn func(x *previewIndex)) error {
	lctx, cancel := context.WithTimeout(ctx, 2*storageTimeout)
	defer cancel()
	if err := cl.Storage.Lock(lctx, cl.previewsLockName()); err != nil {
		err = fmt.Errorf("taking the group's previews lock: %w", err)
		d.storageFailed(err)
		return &storageError{err}
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storageTimeout)
		defer cancel()
		if err := cl.Storage.Unlock(uctx, cl.previewsLockName()); err != nil {
			d.storageFailed(fmt.Errorf("releasing the group's previews lock: %w", err))
		}
	}()
	b, err := loadPreviewIndex(lctx, cl)
	if err != nil {
		err = fmt.Errorf("reading the group's previews: %w", err)
		d.storageFailed(err)
		return &storageError{err}
	}
	x, err := decodePreviewIndex(b)
	if err != nil {
		return err // a newer node's record: not overwritten
	}
	fn(x)
	now := d.now()
	x.Version = recordVersion
	x.Previews = slices.DeleteFunc(x.Previews, func(e groupPreview) bool { return e.Removed && now.Sub(e.At) > tombstoneKeep })
	slices.SortFunc(x.Previews, func(a, b groupPreview) int { return a.Number - b.Number })
	nb, err := json.Marshal(x)
	if err != nil {
		return err
	}
	if err := cl.Storage.Store(lctx, cl.previewsKey(), nb); err != nil {
		err = fmt.Errorf("writing the group's previews: %w", err)
		d.storageFailed(err)
		return &storageError{err}
	}
	return nil
}

// dropPreviewArchives deletes the archives of a preview's group sub but
// keep's ("" for all).
func (d *Deployer) dropPreviewArchives(ctx context.Context, sub *Cluster, keep string) {
	keys, err := sub.Storage.List(ctx, sub.archivesKey(), false)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		d.log().Warn("deleting a preview's archives", zap.Error(err))
		return
	}
	for _, k := range keys {
		base := k[strings.LastIndexByte(k, '/')+1:]
		if keep != "" && strings.HasPrefix(base, keep+archiveExt) {
			continue
		}
		if err := sub.Storage.Delete(ctx, k); err != nil && !errors.Is(err, fs.ErrNotExist) {
			d.log().Warn("deleting a preview's archive", zap.String("key", k), zap.Error(err))
		}
	}
}

// unshareUnknown removes number's preview from the group when this node
// has none (another node may build it now): in the background, as
// RemovePreview does. It reports whether it does.
func (d *Deployer) unshareUnknown(cfg Config, number int) bool {
	if cfg.Cluster == nil || cfg.Previews == nil {
		return false
	}
	d.mu.Lock()
	if d.previews.stopped || d.previews.done == nil {
		d.mu.Unlock()
		return false
	}
	d.previews.removes.Add(1)
	d.mu.Unlock()
	go func() {
		defer d.previews.removes.Done()
		d.unsharePreview(cfg.Cluster, number, previewHost(cfg.Previews, number))
	}()
	return true
}
