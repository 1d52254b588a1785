// Storing a release for the group: its archive, the live record, and
// pruning archives past Keep.

package deployer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

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

// storeRelease packs the published folder pub of release name into the
// group's archive, stored part by part as it is packed, then stores the
// group's live record, and prunes archives past Keep. The caller holds the
// group's build lock.
func (d *Deployer) storeRelease(ctx context.Context, cfg Config, commit, name, pub, pinnedFrom string) (*liveRecord, error) {
	gl, err := d.storeArchive(ctx, cfg, commit, name, pub, pinnedFrom)
	if err != nil {
		return nil, err
	}
	if err := d.storeLive(ctx, cfg.Cluster, gl); err != nil {
		return nil, err
	}
	d.fault(FaultStored, commit)
	d.pruneArchives(ctx, cfg, name)
	return gl, nil
}

// storeArchive packs the published folder pub of release name into the
// group's archive, stored part by part as it is packed, and returns the
// live record that names it, not stored yet.
func (d *Deployer) storeArchive(ctx context.Context, cfg Config, commit, name, pub, pinnedFrom string) (*liveRecord, error) {
	cl := cfg.Cluster
	start := d.now()
	pw := newPartWriter(d.opts.partSize, func(i int) string { return cl.partKey(name, i) },
		func(key string, value []byte) error { return d.storeWithRetry(ctx, cl, key, value) })
	unpacked, err := packTree(pub, pw)
	digest := ""
	if err == nil {
		digest, err = pw.close()
	}
	if pw.err != nil {
		err = pw.err // storage's error, as storeWithRetry returns it
	}
	if err != nil {
		// What was stored of it is no archive: no record will name it.
		for _, p := range pw.parts {
			dctx, cancel := context.WithTimeout(d.ctx, storageTimeout)
			cl.Storage.Delete(dctx, p.Key)
			cancel()
		}
		return nil, err
	}
	gl := &liveRecord{Version: recordVersion, Commit: commit, Release: name, Archive: cl.archiveKey(name), Digest: digest,
		Size: pw.n, Parts: pw.parts, Unpacked: unpacked, Node: cl.Node, PinnedFrom: pinnedFrom}
	d.log().Info("stored the release's archive for the group", zap.String("release", name), zap.Int64("size", gl.Size),
		zap.Int("parts", len(gl.Parts)), zap.Int64("unpacked", unpacked), zap.String("digest", digest),
		zap.Duration("duration", d.now().Sub(start)))
	return gl, nil
}

// storeLive stores gl as the group's live record.
func (d *Deployer) storeLive(ctx context.Context, cl *Cluster, gl *liveRecord) error {
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
	// A release's archive is its parts: <name>.tar.zst, <name>.tar.zst.1...
	parts := map[string][]string{}
	var names []string
	for _, k := range keys {
		name, part, ok := strings.Cut(k[strings.LastIndexByte(k, '/')+1:], archiveExt)
		if n, err := strconv.Atoi(strings.TrimPrefix(part, ".")); !ok || part != "" && (part[0] != '.' || err != nil || n < 1) {
			continue
		}
		if _, seen := parts[name]; !seen {
			names = append(names, name)
		}
		parts[name] = append(parts[name], k)
	}
	slices.Sort(names)
	for i := len(names) - 1; i >= 0 && len(keep) < cfg.Keep; i-- {
		keep[names[i]] = true
	}
	var errs []error
	for _, name := range names {
		if !keep[name] {
			for _, k := range parts[name] {
				errs = append(errs, cl.Storage.Delete(ctx, k))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		d.log().Warn("pruning the group's archives", zap.Error(err))
	}
}
