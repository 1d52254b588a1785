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

// checkLinks walks pub, the resolved published folder of the release dir,
// and returns an error naming the symlinks that resolve outside pub:
// absolute ones, relative ones that climb out, and those whose chain of
// links leads out. Links that stay inside are fine, dangling ones too: a
// file server follows them to nothing outside. This holds for a checkout,
// for the fast path and for whatever a build wrote, as on GitHub Pages.
func checkLinks(dir, pub, publish string) error {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("resolving the release: %w", err)
	}
	var bad []string
	count := 0
	err = filepath.WalkDir(pub, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.Type()&fs.ModeSymlink == 0 {
			return nil
		}
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
		return nil
	})
	if err != nil {
		return fmt.Errorf("checking symlinks: %w", err)
	}
	return linksOutside(count, bad, publish)
}

// checkLinkList is checkLinks for a release whose symlinks are known: links,
// relative to dir and slash-separated, are all of them, and the folders
// above each are real folders (as in a checkout of a tree). Only those under
// pub are served, and checked; nothing is walked.
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
