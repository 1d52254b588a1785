package deployer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"

	"go.uber.org/zap"
)

// A deploy without commands costs what changed, not the size of the site:
// prune leaves one release past Keep on disk, the spare (state.Spare), and
// the next such deploy renames it to the new release and updates, in
// place, only the paths that differ between the spare's commit and the tip
// (diffCommits: what `git diff-tree -r` would list).
// New content always goes through a new inode (written beside, then renamed
// over): the spare's unchanged files may be hard links shared with kept
// releases, which must not change. Only an Exact spare (its files its
// commit's blobs, byte for byte) is reused; the state forgets it, and names
// the new release as Building, before its folder is touched, so a crash
// half-way leaves a folder that recovery removes, never a changed live or
// kept release.

// madeRelease is what reuseSpare wrote into a release, for publish (which
// then need not walk it for .git entries) and for a test that compares ways
// to put it on disk: the files written and the folders whose entries
// changed.
type madeRelease struct {
	release string
	files   []string // relative to the release, slash-separated
	dirs    []string // relative to the release; "." is the release itself
	// links are the symlinks of the release, when linksKnown: the spare's,
	// with the changes made.
	links      []string
	linksKnown bool
}

// reuseSpare makes releases/name commit's tree from the spare release, if
// there is one that may be reused and the change allows it. It reports
// whether it made the release; when it did not, nothing of name is left and
// the caller makes the release another way.
func (d *Deployer) reuseSpare(ctx context.Context, g *git, cfg Config, name, commit string, log io.Writer) (bool, error) {
	if len(cfg.Commands) > 0 || cfg.Submodules {
		return false, nil
	}
	releases := filepath.Join(d.path, releasesName)
	dir := filepath.Join(releases, name)

	// Forget the spare before touching it: from the save on, its folder is
	// either unknown to the state or the release being built, and recovery
	// removes both.
	d.diskMu.Lock()
	live := liveRelease(d.path) // diskMu keeps current as it is
	d.mu.Lock()
	spare := d.st.Spare
	if spare == nil || d.st.Building == nil || d.st.Building.Release != name {
		d.mu.Unlock()
		d.diskMu.Unlock()
		return false, nil
	}
	d.st.Spare = nil
	st := d.st
	d.mu.Unlock()
	err := st.save(d.path)
	d.diskMu.Unlock()
	if err != nil {
		d.mu.Lock()
		d.st.Spare = spare
		d.mu.Unlock()
		d.log().Warn("cannot reuse the spare release", zap.Error(err))
		return false, nil
	}
	old := filepath.Join(releases, spare.Name)
	if !spare.Exact || spare.Commit == "" || !validReleaseName(spare.Name) || spare.Name == live || d.isKept(spare.Name) {
		if spare.Name != live && !d.isKept(spare.Name) && validReleaseName(spare.Name) {
			os.RemoveAll(old)
		}
		return false, nil
	}
	if err := os.Rename(old, dir); err != nil {
		os.RemoveAll(old)
		d.log().Debug("cannot reuse the spare release", zap.String("spare", spare.Name), zap.Error(err))
		return false, nil
	}
	made, err := d.updateRelease(ctx, g, dir, spare.Commit, commit, spare.links())
	if err != nil {
		if rerr := os.RemoveAll(dir); rerr != nil {
			return false, fmt.Errorf("removing a partial release: %w", rerr)
		}
		if ctx.Err() != nil {
			return false, err
		}
		d.log().Debug("updating the spare release failed; making the release another way", zap.String("spare", spare.Name), zap.Error(err))
		return false, nil
	}
	made.release = name
	d.made = made
	fmt.Fprintf(log, "reused release %s (%s), wrote %d changed files\n", spare.Name, short(spare.Commit), len(made.files))
	return true, nil
}

// isKept reports whether name is a release the state offers for rollback.
func (d *Deployer) isKept(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.st.find(name) != nil
}

// updateRelease turns dir, an exact copy of from's tree, into one of to's,
// touching only the paths that differ.
// fromLinks, when not nil, are from's symlinks; the release made then
// lists to's.
func (d *Deployer) updateRelease(ctx context.Context, g *git, dir, from, to string, fromLinks map[string]bool) (*madeRelease, error) {
	changes, err := d.diffCommits(ctx, g, from, to)
	if err != nil {
		return nil, err
	}
	dels, writes, err := planChanges(changes)
	if err != nil {
		return nil, err
	}

	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	made := &madeRelease{}
	dirs := map[string]bool{}
	touch := func(p string) {
		for p = path.Dir(p); ; p = path.Dir(p) {
			dirs[p] = true
			if p == "." {
				return
			}
		}
	}

	// Deletions first, deepest first, with the folders they leave empty
	// (a tree has none): a file that becomes a folder, or a folder that
	// becomes a file, then finds its path free.
	for _, p := range dels {
		if err := root.Remove(filepath.FromSlash(p)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("removing %s: %w", p, err)
		}
		touch(p)
		d.reuseStep(p)
		for parent := path.Dir(p); parent != "."; parent = path.Dir(parent) {
			if root.Remove(filepath.FromSlash(parent)) != nil {
				break // not empty
			}
			touch(parent)
		}
	}

	// Then files, then symlinks.
	err = d.writeChanges(ctx, g, root, writes, changes, func(p string) {
		touch(p)
		d.reuseStep(p)
		if changes[p].mode != "120000" {
			made.files = append(made.files, p)
		}
	})
	if err != nil {
		return nil, err
	}
	for p := range dirs {
		made.dirs = append(made.dirs, p)
	}
	slices.Sort(made.dirs)
	if fromLinks != nil {
		for p, c := range changes {
			if c.status != 'D' && c.mode == "120000" {
				fromLinks[p] = true
			} else {
				delete(fromLinks, p)
			}
		}
		made.linksKnown = true
		made.links = slices.Sorted(maps.Keys(fromLinks))
	}
	return made, nil
}

// links returns the set of r's symlinks, or nil when they are not known.
func (r *releaseRecord) links() map[string]bool {
	if !r.LinksKnown {
		return nil
	}
	set := make(map[string]bool, len(r.Links))
	for _, l := range r.Links {
		set[l] = true
	}
	return set
}
