package deployer

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// A deploy without commands publishes the commit's tree as it is. Writing
// every file of a large site again for a one-file change costs as much as a
// fresh clone. When there is a spare release to reuse, reuseSpare (reuse.go)
// updates it in place and touches only what changed; when there is none yet
// (the first deploys), linkRelease hard-links the unchanged files from the
// live release and writes only what changed: a link per file of the site. This is safe only because
// nothing writes into such a release after it is made: no command runs in
// it, and the deployer itself replaces files (write, then rename) rather than
// writing into them. With commands, or submodules, or .gitattributes (whose
// filters and line-ending rules only a real checkout applies), the deployer
// checks out in full.

// linkable returns the live release when the next one may be linked from it.
func (d *Deployer) linkable(cfg Config) (releaseRecord, bool) {
	if len(cfg.Commands) > 0 || cfg.Submodules {
		return releaseRecord{}, false
	}
	live := liveRelease(d.path)
	d.mu.Lock()
	defer d.mu.Unlock()
	r := d.st.find(live)
	if r == nil || !r.Pristine || r.Commit == "" {
		return releaseRecord{}, false
	}
	return *r, true
}

// change is what differs at one path: one line of git diff-tree's raw
// output, or what diffCommits found.
type change struct {
	mode   string // the new mode: 100644, 100755, 120000 (symlink), 160000 (submodule)
	object string
	status byte // A, M, D, T
}

// linkRelease makes dir a copy of commit's tree, given prevDir, a pristine
// release of prevCommit: unchanged files are hard links into prevDir.
func (d *Deployer) linkRelease(ctx context.Context, g *git, prevDir, prevCommit, dir, commit string) error {
	changes, err := d.diffCommits(ctx, g, prevCommit, commit)
	if err != nil {
		return err
	}
	_, writes, err := planChanges(changes)
	if err != nil {
		return err
	}

	// Link what did not change. Folders are made as the writer makes
	// them (objects.go): 0755 whatever the umask.
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	made := map[string]bool{}
	mkdir := func(rel string) error {
		if rel == "." || made[rel] {
			return nil
		}
		made[rel] = true
		return makeDirs(root, rel)
	}
	err = filepath.WalkDir(prevDir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(prevDir, p)
		if e.IsDir() || rel == "." {
			return nil
		}
		if e.Name() == ".gitattributes" {
			return errNeedsCheckout
		}
		if _, changed := changes[filepath.ToSlash(rel)]; changed {
			return nil
		}
		if err := mkdir(filepath.Dir(rel)); err != nil {
			return err
		}
		if e.Type()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, filepath.Join(dir, rel))
		}
		if !e.Type().IsRegular() {
			return errNeedsCheckout
		}
		return os.Link(p, filepath.Join(dir, rel))
	})
	if err != nil {
		return fmt.Errorf("linking unchanged files: %w", err)
	}

	// Write what did.
	if err := d.writeChanges(ctx, g, root, writes, changes, nil); err != nil {
		return fmt.Errorf("writing changed files: %w", err)
	}
	return nil
}

// safeGitPath reports whether p, a path that git lists, may be written into a
// release as it is: relative, with no empty, ".", ".." or ".git" component
// (nor one that some file system takes for ".git": ".GIT", ".git.",
// "git~1", ".git" with characters HFS+ ignores), no NUL and no backslash.
func safeGitPath(p string) bool {
	if p == "" || strings.ContainsAny(p, "\x00\\") {
		return false
	}
	for _, c := range strings.Split(p, "/") {
		if c == "" || c == "." || c == ".." || isDotGit(c) {
			return false
		}
	}
	return true
}

// isDotGit reports whether the path component c names, or may be taken on
// some file system for, ".git".
func isDotGit(c string) bool {
	c = strings.Map(func(r rune) rune {
		switch {
		case r >= 0x200c && r <= 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x206a && r <= 0x206f, r == 0xfeff:
			return -1 // ignored by HFS+
		}
		return r
	}, c)
	c, _, _ = strings.Cut(c, ":") // NTFS streams: ".git::$INDEX_ALLOCATION"
	c = strings.ToLower(strings.TrimRight(c, ". "))
	return c == ".git" || c == "git~1"
}
