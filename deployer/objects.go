package deployer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Every way of making a release writes its files here, but git's own
// checkout: the fast path (linkRelease) and the reuse of a spare
// (updateRelease) write git's blobs through writeObject, the unpack of a
// group's archive (unpackTree) writes tar entries through writeFile and
// writeLink. One set of rules for all:
//
//   - a regular file is 0644, or 0755 when executable (git's two modes),
//     whatever the umask: the mode is set on the open file once written;
//   - a folder the writer makes is 0755, whatever the umask;
//   - a symlink's target is at most maxLinkTarget bytes; a longer one is
//     refused, never cut short, and never read whole;
//   - a file or a link is written beside its name and renamed over it: a
//     new inode, never a write into a file that other releases may share
//     (hard links), and never a half-written file under its name.
//
// A full checkout (`git worktree add`) is git's to write: attributes,
// filters and submodules are applied only there. Its folders and files get
// the same modes afterwards (fixCheckoutModes) when the umask cut them.

// errNeedsCheckout is returned when a change can be made only by a full
// checkout: the caller makes the release that way.
var errNeedsCheckout = errors.New("the change needs a full checkout")

// planChanges checks that changes (what differs between two commits) can
// be written into a release without a checkout, and returns the paths to
// delete, deepest first, and those to write: files, then symlinks, so that
// nothing is written through a link of the new tree. Only paths a checkout
// would write; no attributes, which only a checkout applies; no
// submodules.
func planChanges(changes map[string]change) (dels, writes []string, _ error) {
	var files, links []string
	for p, c := range changes {
		// git's own checkout refuses the paths that safeGitPath refuses;
		// fetch's fsck refuses most before they reach the cache.
		if !safeGitPath(p) {
			return nil, nil, fmt.Errorf("%w: path %q", errNeedsCheckout, p)
		}
		if c.mode == "160000" || path.Base(p) == ".gitattributes" {
			return nil, nil, errNeedsCheckout
		}
		switch {
		case c.status == 'D':
			dels = append(dels, p)
		case c.mode == "120000":
			links = append(links, p)
		case c.mode == "100644" || c.mode == "100755":
			files = append(files, p)
		default:
			return nil, nil, errNeedsCheckout
		}
	}
	slices.SortFunc(dels, func(a, b string) int {
		if n := strings.Count(b, "/") - strings.Count(a, "/"); n != 0 {
			return n
		}
		return strings.Compare(a, b)
	})
	slices.Sort(files)
	slices.Sort(links)
	return dels, append(files, links...), nil
}

// writeChanges writes the blobs that paths have in changes into root, read
// through the deployer's cat-file, making their folders; done, when not
// nil, is called after each. os.Root keeps every write inside the release
// whatever links it holds.
func (d *Deployer) writeChanges(ctx context.Context, g *git, root *os.Root, paths []string, changes map[string]change,
	done func(p string)) error {
	return d.withCatFile(ctx, g, func(c *catFile) error {
		for _, p := range paths {
			ch := changes[p]
			name := filepath.FromSlash(p)
			if err := makeDirs(root, filepath.Dir(name)); err != nil {
				return fmt.Errorf("making the folder of %s: %w", p, err)
			}
			err := c.blob(ch.object, func(content io.Reader) error {
				return writeObject(root, name, ch.mode, content)
			})
			if err != nil {
				return fmt.Errorf("writing %s: %w", p, err)
			}
			if done != nil {
				done(p)
			}
		}
		return nil
	})
}

// maxLinkTarget is the longest symlink target a release holds: Linux's
// PATH_MAX less the NUL that ends it. symlink(2) refuses a longer one.
const maxLinkTarget = 4095

// tmpSuffix ends the name a file or link is written under, beside its
// own, before it is renamed over it.
const tmpSuffix = ".tmp-deploy"

// errLinkTooLong is returned for a symlink whose target is longer than
// maxLinkTarget.
var errLinkTooLong = fmt.Errorf("symlink target longer than %d bytes", maxLinkTarget)

// filePerm returns the permission bits of a release's regular file: git
// records a file as executable or not, and checks it out 0755 or 0644.
func filePerm(exec bool) fs.FileMode {
	if exec {
		return 0o755
	}
	return 0o644
}

// writeObject writes a git blob of mode (100644, 100755 or 120000) with
// content to name in root. Any other mode (a submodule) is
// errNeedsCheckout.
func writeObject(root *os.Root, name, mode string, content io.Reader) error {
	switch mode {
	case "120000":
		target, err := readLinkTarget(content)
		if err != nil {
			return err
		}
		return writeLink(root, name, target)
	case "100644", "100755":
		return writeFile(root, name, mode == "100755", content, nil, time.Time{})
	}
	return errNeedsCheckout
}

// readLinkTarget reads a symlink's target from content, reading no more
// than one byte past maxLinkTarget.
func readLinkTarget(content io.Reader) (string, error) {
	b, err := io.ReadAll(io.LimitReader(content, maxLinkTarget+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxLinkTarget {
		return "", errLinkTooLong
	}
	return string(b), nil
}

// writeFile writes content to name in dir, beside it and then renamed over
// it, with the mode filePerm(exec) whatever the umask, and modified at
// mtime unless it is zero. buf, when not nil, is the copy buffer.
func writeFile(dir *os.Root, name string, exec bool, content io.Reader, buf []byte, mtime time.Time) error {
	perm := filePerm(exec)
	tmp := name + tmpSuffix
	f, err := dir.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	_, err = io.CopyBuffer(writerOnly{f}, content, buf)
	if err == nil {
		// The umask may have cut the mode asked for.
		err = f.Chmod(perm)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && !mtime.IsZero() {
		err = dir.Chtimes(tmp, mtime, mtime)
	}
	if err == nil {
		err = dir.Rename(tmp, name)
	}
	if err != nil {
		dir.Remove(tmp)
		return err
	}
	return nil
}

// writeLink makes name in dir a symlink to target, beside it and then
// renamed over it. The link is made whatever it points at: publish refuses
// links that resolve outside the published folder.
func writeLink(dir *os.Root, name, target string) error {
	if len(target) > maxLinkTarget {
		return errLinkTooLong
	}
	tmp := name + tmpSuffix
	if err := dir.Symlink(target, tmp); err != nil {
		return err
	}
	if err := dir.Rename(tmp, name); err != nil {
		dir.Remove(tmp)
		return err
	}
	return nil
}

// makeDirs makes the folder name in root with its parents, each folder it
// makes 0755 whatever the umask.
func makeDirs(root *os.Root, name string) error {
	if name == "." || name == "" {
		return nil
	}
	fi, err := root.Lstat(name)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("mkdir %s: not a folder", name)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := makeDirs(root, filepath.Dir(name)); err != nil {
		return err
	}
	if err := root.Mkdir(name, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return root.Chmod(name, 0o755)
}

// fixCheckoutModes gives the folders and regular files of dir, a fresh
// checkout, the modes the writer gives them (0755, and 0644 or 0755 by the
// owner's execute bit), when the umask cut what git made. git makes the
// release's folder itself: when it is 0755, the umask cut nothing that
// matters and dir is not walked.
func fixCheckoutModes(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if fi.Mode().Perm() == 0o755 {
		return nil
	}
	return filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.Name() == ".git" && p != dir {
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		var want fs.FileMode
		switch {
		case e.IsDir():
			want = 0o755
		case e.Type().IsRegular():
			fi, err := e.Info()
			if err != nil {
				return err
			}
			want = filePerm(fi.Mode().Perm()&0o100 != 0)
			if fi.Mode().Perm() == want {
				return nil
			}
		default:
			return nil
		}
		return os.Chmod(p, want)
	})
}
