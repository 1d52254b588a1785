package deployer

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
)

// A deploy that reuses a release needs the paths that differ between two
// commits, as `git diff-tree -r` lists them. diffCommits reads the trees
// through the deployer's cat-file and compares them here, descending only
// into subtrees whose ids differ: no process per deploy, and no startup
// cost on top of reading the two trees.

// treeIter walks the entries of a tree object's content in place: an
// entry is "<mode> <name>\0" and the binary id, of idLen bytes. Nothing is
// allocated for an entry that is the same on both sides of a diff.
type treeIter struct {
	raw             []byte
	idLen           int
	mode, name, oid []byte // the current entry
	entry           []byte // all of it, to compare with another tree's
	ok              bool
}

// next moves to the next entry; it reports false at the end.
func (t *treeIter) next() (bool, error) {
	t.ok = false
	if len(t.raw) == 0 {
		return false, nil
	}
	sp := bytes.IndexByte(t.raw, ' ')
	nul := bytes.IndexByte(t.raw, 0)
	if sp <= 0 || nul < sp+2 || len(t.raw) < nul+1+t.idLen {
		return false, errors.New("parsing a tree: malformed entry")
	}
	end := nul + 1 + t.idLen
	t.mode, t.name, t.oid, t.entry = t.raw[:sp], t.raw[sp+1:nul], t.raw[nul+1:end], t.raw[:end]
	t.raw = t.raw[end:]
	t.ok = true
	return true, nil
}

func (t *treeIter) isTree() bool { return t.ok && string(t.mode) == "40000" }

// compareEntries orders the current entries of a and b as git orders a
// tree's entries: by name, a subtree's as if it ended with a slash.
// An iterator at its end sorts last.
func compareEntries(a, b *treeIter) int {
	switch {
	case !a.ok:
		return 1
	case !b.ok:
		return -1
	}
	n := min(len(a.name), len(b.name))
	if c := bytes.Compare(a.name[:n], b.name[:n]); c != 0 {
		return c
	}
	c1, c2 := byte(0), byte(0)
	if n < len(a.name) {
		c1 = a.name[n]
	} else if a.isTree() {
		c1 = '/'
	}
	if n < len(b.name) {
		c2 = b.name[n]
	} else if b.isTree() {
		c2 = '/'
	}
	return int(c1) - int(c2)
}

// diffCommits returns the changes from commit from to commit to, each path
// with its new mode and blob, or status D: what `git diff-tree -r
// --no-renames --raw` lists, parsed by parseDiffTree.
func (d *Deployer) diffCommits(ctx context.Context, g *git, from, to string) (map[string]change, error) {
	changes := map[string]change{}
	err := d.withCatFile(ctx, g, func(c *catFile) error {
		clear(changes)
		a, err := c.treeOf(from)
		if err != nil {
			return err
		}
		b, err := c.treeOf(to)
		if err != nil {
			return err
		}
		return c.diffTrees(a, b, "", changes)
	})
	if err != nil {
		return nil, fmt.Errorf("listing changes: %w", err)
	}
	return changes, nil
}

// treeOf returns the id of commit's tree.
func (c *catFile) treeOf(commit string) (string, error) {
	oid, typ, _, err := c.ask("info", commit+"^{tree}")
	if err != nil {
		return "", err
	}
	if typ != "tree" {
		return "", fmt.Errorf("%w: the tree of %s is a %s", errCatFile, commit, typ)
	}
	return oid, nil
}

// diffTrees adds to changes what differs between trees a and b ("" for
// none), their paths under prefix.
func (c *catFile) diffTrees(a, b, prefix string, changes map[string]change) error {
	if a == b {
		return nil
	}
	x, y := &treeIter{}, &treeIter{} // the old tree, the new one
	for _, t := range []struct {
		oid  string
		iter *treeIter
	}{{a, x}, {b, y}} {
		if t.oid == "" {
			continue
		}
		raw, err := c.tree(t.oid)
		if err != nil {
			return err
		}
		t.iter.raw, t.iter.idLen = raw, len(t.oid)/2
	}
	advance := func(t *treeIter) error {
		_, err := t.next()
		return err
	}
	if err := errors.Join(advance(x), advance(y)); err != nil {
		return err
	}
	for x.ok || y.ok {
		cmp := compareEntries(x, y)
		if cmp == 0 && bytes.Equal(x.entry, y.entry) {
			if err := errors.Join(advance(x), advance(y)); err != nil {
				return err
			}
			continue
		}
		old, cur := x, y // the entries this step compares; nil when absent
		switch {
		case cmp < 0:
			cur = nil
		case cmp > 0:
			old = nil
		}
		var name string
		if old != nil {
			name = prefix + string(old.name)
		} else {
			name = prefix + string(cur.name)
		}
		switch {
		case old != nil && old.isTree() || cur != nil && cur.isTree():
			// Same name and both trees, or a tree on one side only: a
			// file that became a folder (or back) has two places in the
			// order, and comes here once for each.
			var from, to string
			if old != nil {
				from = hex.EncodeToString(old.oid)
			}
			if cur != nil {
				to = hex.EncodeToString(cur.oid)
			}
			if err := c.diffTrees(from, to, name+"/", changes); err != nil {
				return err
			}
		case cur == nil:
			changes[name] = change{mode: "000000", object: strings.Repeat("0", 2*len(old.oid)), status: 'D'}
		case old == nil:
			changes[name] = change{mode: string(cur.mode), object: hex.EncodeToString(cur.oid), status: 'A'}
		default:
			status := byte('M')
			if !bytes.Equal(old.mode[:2], cur.mode[:2]) { // 10 (file), 12 (symlink), 16 (submodule)
				status = 'T'
			}
			changes[name] = change{mode: string(cur.mode), object: hex.EncodeToString(cur.oid), status: status}
		}
		if old != nil {
			if err := advance(old); err != nil {
				return err
			}
		}
		if cur != nil {
			if err := advance(cur); err != nil {
				return err
			}
		}
	}
	return nil
}

// tree reads the content of tree oid.
func (c *catFile) tree(oid string) ([]byte, error) {
	var raw []byte
	err := c.object(oid, "tree", func(r io.Reader) (err error) {
		if lr, ok := r.(*io.LimitedReader); ok { // its size is known
			raw = make([]byte, lr.N)
			_, err = io.ReadFull(r, raw)
			return err
		}
		raw, err = io.ReadAll(r)
		return err
	})
	return raw, err
}
