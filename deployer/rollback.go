package deployer

import (
	"context"
	"fmt"
	"path/filepath"

	"go.uber.org/zap"
)

// Rollback switches current to release, or, when release is "", to the
// newest kept release older than the live one. Start-up and poll then leave
// the commit rolled back from alone, also after a restart; a new commit, a
// delivery or a manual deploy deploys again.
//
// In a group, the group's live record moves to the release first, and
// every node follows: this node's release is packed and stored again as the
// group's archive, before the disk is locked against deploys, so that a
// deploy is not held up by the packing. ctx bounds the rollback (storage
// that does not answer fails it, after a minute at most); so does Close.
func (d *Deployer) Rollback(ctx context.Context, release string) (Live, error) {
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return Live{}, ErrClosed
	}
	cfg := d.config()
	ctx, cancel := context.WithTimeout(ctx, min(cfg.Timeout, rollbackTimeout))
	defer cancel()
	stop := context.AfterFunc(d.ctx, cancel)
	defer stop()

	target, live, err := d.rollbackTarget(release)
	if err != nil {
		return Live{}, err
	}
	var gl *liveRecord
	if cfg.Cluster != nil {
		if gl, err = d.storeRollback(ctx, cfg, target); err != nil {
			return Live{}, fmt.Errorf("rolling back the group: %w", err)
		}
	}

	d.diskMu.Lock()
	defer d.diskMu.Unlock()
	d.mu.Lock()
	kept := d.st.find(target.Name) != nil
	d.mu.Unlock()
	if !kept || liveRelease(d.path) != live {
		return Live{}, fmt.Errorf("rolling back to %s: %w", target.Name, ErrRollbackRaced)
	}
	targetDir := filepath.Join(d.path, releasesName, target.Name)
	pub, err := publishedDir(targetDir, target.Publish)
	if err == nil {
		_, _, err = checkServed(targetDir, pub, target.Publish, !target.Pristine)
	}
	if err != nil {
		return Live{}, fmt.Errorf("rolling back to %s: %w", target.Name, err)
	}
	if gl != nil {
		if err := d.storeLive(ctx, cfg.Cluster, gl); err != nil {
			return Live{}, fmt.Errorf("rolling back the group: %w", err)
		}
		d.markLiveMoved(ctx, cfg.Cluster)
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
	st := d.st
	d.mu.Unlock()
	if err := st.save(d.path); err != nil {
		return Live{}, err
	}
	d.log().Info("rolled back", zap.String("release", target.Name), zap.String("commit", target.Commit), zap.String("from", live))
	d.notify(Event{Kind: EventRolledBack, Commit: target.Commit, Release: target.Name, At: now})
	if gl != nil {
		d.pruneArchives(ctx, cfg, target.Name)
	}
	return Live{Commit: target.Commit, Release: target.Name, At: now}, nil
}

// rollbackTarget returns the release to roll back to, as Rollback says,
// and the live release it is chosen against.
func (d *Deployer) rollbackTarget(release string) (releaseRecord, string, error) {
	live := liveRelease(d.path)
	d.mu.Lock()
	defer d.mu.Unlock()
	st := &d.st
	if release == "" {
		for i := len(st.Releases) - 1; i >= 0; i-- {
			if st.Releases[i].Name == live {
				if i > 0 {
					return st.Releases[i-1], live, nil
				}
				break
			}
		}
		return releaseRecord{}, "", ErrNoOlderRelease
	}
	target := st.find(release)
	if target == nil {
		return releaseRecord{}, "", fmt.Errorf("%w: %q", ErrUnknownRelease, release)
	}
	return *target, live, nil
}

// storeRollback stores target, a release of this node, as the group's
// archive of it, and returns the live record that moves the group to it,
// not stored yet. The archive is packed again from this node's own
// release, never taken from storage as it is: its digest must come from
// bytes this node checked, or a corrupted archive in storage would pass
// every follower's check after a rollback.
func (d *Deployer) storeRollback(ctx context.Context, cfg Config, target releaseRecord) (*liveRecord, error) {
	if target.Commit == "" {
		return nil, fmt.Errorf("rolling back the group to %s: its commit is unknown", target.Name)
	}
	gl, err := d.readLive(ctx, cfg.Cluster)
	if err != nil {
		return nil, err
	}
	pinned := ""
	if gl != nil {
		pinned = gl.PinnedFrom
		if pinned == "" && gl.Commit != target.Commit {
			pinned = gl.Commit
		}
	}
	pub, err := publishedDir(filepath.Join(d.path, releasesName, target.Name), target.Publish)
	if err != nil {
		return nil, err
	}
	return d.storeArchive(ctx, cfg, target.Commit, target.Name, pub, pinned)
}
