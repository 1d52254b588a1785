package deployer

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// maxLinkHops is how many symlinks one resolution follows, as Linux does
// (ELOOP past 40): past it the kernel follows nothing, so nothing is served.
const maxLinkHops = 40

// checkServed checks what goes live in one walk of pub, the resolved
// published folder of the release dir: only regular files, folders, and
// symlinks that stay inside pub.
//
// It returns an error naming the symlinks that resolve outside pub:
// absolute ones, relative ones that climb out, and those whose chain of
// links leads out. Links that stay inside are fine, dangling ones too: a
// file server follows them to nothing outside. This holds for a checkout,
// for the fast path and for whatever a build wrote, as on GitHub Pages.
//
// It returns an error naming each FIFO, socket or device, and its kind: a
// file server that opens a FIFO waits in open(2) for a writer that never
// comes, one thread per request, until the process can answer nothing.
//
// It clears the setuid and setgid bits of the files and folders that have
// them, keeping the rest of their mode, and returns the first few of those
// (relative to the release) with their count. Clearing, rather than
// failing, because some tools and file systems leave setgid on folders (a
// folder made inside a setgid folder inherits it), and that is no reason to
// refuse a site; a file server never executes what it serves, and nothing
// that goes live stays setuid or setgid for whoever else can reach it.
// Reading a mode costs an lstat: 20,000 of them take ~100 ms here, nine
// times the rest of the walk. Folders are always read (there are few);
// files only when built says that commands ran in the release: git, the
// fast path and an archive's unpacking write files 0644 or 0755.
func checkServed(dir, pub, publish string, built bool) (cleared []string, nCleared int, _ error) {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, 0, fmt.Errorf("resolving the release: %w", err)
	}
	var bad, odd []string
	count, nOdd := 0, 0
	err = filepath.WalkDir(pub, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		typ := e.Type()
		switch {
		case typ&fs.ModeSymlink != 0:
			rel, _ := filepath.Rel(pub, p)
			target, out, err := linkLeaves(pub, rel)
			if err != nil {
				return err
			}
			if out {
				count++
				if len(bad) < 3 {
					name, _ := filepath.Rel(root, p)
					bad = append(bad, fmt.Sprintf("%q -> %q", filepath.ToSlash(name), target))
				}
			}
		case typ&^fs.ModeDir != 0:
			nOdd++
			if len(odd) < 3 {
				name, _ := filepath.Rel(root, p)
				odd = append(odd, fmt.Sprintf("%q (%s)", filepath.ToSlash(name), kindOf(typ)))
			}
		case typ.IsDir() || built:
			fi, err := e.Info()
			if err != nil {
				return err
			}
			m := fi.Mode()
			if m&(fs.ModeSetuid|fs.ModeSetgid) == 0 {
				return nil
			}
			name, _ := filepath.Rel(root, p)
			// WalkDir saw a file or folder, not a link: Chmod acts on it.
			if err := os.Chmod(p, m&(fs.ModePerm|fs.ModeSticky)); err != nil {
				return fmt.Errorf("clearing the setuid and setgid bits of %q: %w", filepath.ToSlash(name), err)
			}
			nCleared++
			if len(cleared) < 3 {
				cleared = append(cleared, filepath.ToSlash(name))
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("checking what goes live: %w", err)
	}
	errOdd, errLinks := notServable(nOdd, odd), linksOutside(count, bad, publish)
	switch {
	case errOdd != nil && errLinks != nil:
		return nil, 0, fmt.Errorf("%w; %w", errOdd, errLinks)
	case errOdd != nil:
		return nil, 0, errOdd
	case errLinks != nil:
		return nil, 0, errLinks
	}
	return cleared, nCleared, nil
}

// kindOf names the type of a file that is neither a regular file, a folder
// nor a symlink.
func kindOf(typ fs.FileMode) string {
	switch {
	case typ&fs.ModeNamedPipe != 0:
		return "FIFO"
	case typ&fs.ModeSocket != 0:
		return "socket"
	case typ&fs.ModeCharDevice != 0:
		return "character device"
	case typ&fs.ModeDevice != 0:
		return "block device"
	}
	return "irregular file"
}

// notServable is the error of count entries that are neither regular
// files, folders nor symlinks, odd the first few (name and kind), or nil.
func notServable(count int, odd []string) error {
	if count == 0 {
		return nil
	}
	more := ""
	if count > len(odd) {
		more = fmt.Sprintf(" and %d more", count-len(odd))
	}
	return fmt.Errorf("%s%s cannot go live: only regular files, folders and symlinks are served", strings.Join(odd, ", "), more)
}

// checkLinkList is checkServed's check of links, for a release whose
// symlinks are known: links, relative to dir and slash-separated, are all
// of them, and the folders above each are real folders (as in a checkout of
// a tree). Only those under pub are served, and checked; nothing is walked.
func checkLinkList(dir, pub, publish string, links []string) error {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("resolving the release: %w", err)
	}
	under, err := filepath.Rel(root, pub)
	if err != nil {
		return fmt.Errorf("checking symlinks: %w", err)
	}
	var bad []string
	count := 0
	for _, l := range links {
		rel := filepath.FromSlash(l)
		if under != "." {
			var ok bool
			if rel, ok = strings.CutPrefix(rel, under+string(filepath.Separator)); !ok {
				continue
			}
		}
		target, out, err := linkLeaves(pub, rel)
		if err != nil {
			return fmt.Errorf("checking symlinks: %w", err)
		}
		if out {
			count++
			if len(bad) < 3 {
				bad = append(bad, fmt.Sprintf("%q -> %q", l, target))
			}
		}
	}
	return linksOutside(count, bad, publish)
}

// linksOutside is the error of count links that resolve outside what is
// served, bad the first few, or nil.
func linksOutside(count int, bad []string, publish string) error {
	if count == 0 {
		return nil
	}
	where := "the release"
	if publish != "" {
		where = fmt.Sprintf("the published folder %q", publish)
	}
	if count == 1 {
		return fmt.Errorf("symlink %s resolves outside %s; links must stay inside what is served", bad[0], where)
	}
	more := ""
	if count > len(bad) {
		more = fmt.Sprintf(" and %d more", count-len(bad))
	}
	return fmt.Errorf("symlinks %s%s resolve outside %s; links must stay inside what is served", strings.Join(bad, ", "), more, where)
}

// linkLeaves reads the symlink at rel inside pub, whose parent folders are
// real folders, and reports its target and whether following it, as the
// kernel would, leaves pub. A link that dangles is followed as far as it
// exists, then by its name alone.
func linkLeaves(pub, rel string) (target string, out bool, err error) {
	target, err = os.Readlink(filepath.Join(pub, rel))
	if err != nil {
		return "", false, err
	}
	var cur []string // the folder reached so far, relative to pub
	if d := filepath.Dir(rel); d != "." {
		cur = strings.Split(d, string(filepath.Separator))
	}
	todo := []string{target}
	hops := 0
	for len(todo) > 0 {
		next := todo[0]
		todo = todo[1:]
		if filepath.IsAbs(next) {
			return target, true, nil
		}
		head, rest, _ := strings.Cut(next, string(filepath.Separator))
		if rest != "" {
			todo = append([]string{rest}, todo...)
		}
		switch head {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return target, true, nil
			}
			cur = cur[:len(cur)-1]
			continue
		}
		cur = append(cur, head)
		p := filepath.Join(pub, filepath.Join(cur...))
		fi, err := os.Lstat(p)
		if err != nil {
			// Dangling from here: what is left is followed by name.
			continue
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			continue
		}
		if hops++; hops > maxLinkHops {
			return target, false, nil
		}
		link, err := os.Readlink(p)
		if err != nil {
			return "", false, err
		}
		cur = cur[:len(cur)-1]
		todo = append([]string{link}, todo...)
	}
	return target, false, nil
}
