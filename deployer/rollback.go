package deployer

import (
	"fmt"
	"path/filepath"

	"go.uber.org/zap"
)

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
		_, _, err = checkServed(targetDir, pub, target.Publish, !target.Pristine)
	}
	if err != nil {
		return Live{}, fmt.Errorf("rolling back to %s: %w", target.Name, err)
	}
	if cfg := d.config(); cfg.Cluster != nil {
		if err := d.rollbackGroup(cfg, *target); err != nil {
			return Live{}, err
		}
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
