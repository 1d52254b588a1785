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

// gitTreeEntry is one entry of a git tree object.
type gitTreeEntry struct {
	mode string // as git writes it: 100644, 100755, 120000, 160000, 40000
	name string
	oid  string // hex
}

func (e gitTreeEntry) isTree() bool { return e.mode == "40000" }

// key is what git orders a tree's entries by: a subtree's name sorts as if
// it ended with a slash.
func (e gitTreeEntry) key() string {
	if e.isTree() {
		return e.name + "/"
	}
	return e.name
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
	var ea, eb []gitTreeEntry
	var err error
	if a != "" {
		if ea, err = c.tree(a); err != nil {
			return err
		}
	}
	if b != "" {
		if eb, err = c.tree(b); err != nil {
			return err
		}
	}
	for i, j := 0, 0; i < len(ea) || j < len(eb); {
		var x, y *gitTreeEntry // the old entry, the new one
		switch {
		case j == len(eb):
			x = &ea[i]
			i++
		case i == len(ea):
			y = &eb[j]
			j++
		default:
			switch cmp := strings.Compare(ea[i].key(), eb[j].key()); {
			case cmp < 0:
				x = &ea[i]
				i++
			case cmp > 0:
				y = &eb[j]
				j++
			default:
				x, y = &ea[i], &eb[j]
				i++
				j++
			}
		}
		switch {
		case x != nil && x.isTree() || y != nil && y.isTree():
			// Same key: both trees. A file that became a folder (or back)
			// has two keys, and comes here once for each side.
			var from, to string
			if x != nil {
				from = x.oid
			}
			if y != nil {
				to = y.oid
			}
			name := x
			if name == nil {
				name = y
			}
			if err := c.diffTrees(from, to, prefix+name.name+"/", changes); err != nil {
				return err
			}
		case y == nil:
			changes[prefix+x.name] = change{mode: "000000", object: strings.Repeat("0", len(x.oid)), status: 'D'}
		case x == nil:
			changes[prefix+y.name] = change{mode: y.mode, object: y.oid, status: 'A'}
		case x.oid != y.oid || x.mode != y.mode:
			status := byte('M')
			if x.mode[:2] != y.mode[:2] { // 10 (file), 12 (symlink), 16 (submodule)
				status = 'T'
			}
			changes[prefix+y.name] = change{mode: y.mode, object: y.oid, status: status}
		}
	}
	return nil
}

// tree reads the entries of tree oid, in git's order.
func (c *catFile) tree(oid string) ([]gitTreeEntry, error) {
	var entries []gitTreeEntry
	err := c.object(oid, "tree", func(r io.Reader) error {
		raw, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		entries, err = parseTree(raw, len(oid)/2)
		return err
	})
	return entries, err
}

// parseTree parses a tree object's content: entries of "<mode> <name>\0"
// and the binary id, of idLen bytes.
func parseTree(raw []byte, idLen int) ([]gitTreeEntry, error) {
	var entries []gitTreeEntry
	for len(raw) > 0 {
		sp := bytes.IndexByte(raw, ' ')
		nul := bytes.IndexByte(raw, 0)
		if sp <= 0 || nul < sp+2 || len(raw) < nul+1+idLen {
			return nil, errors.New("parsing a tree: malformed entry")
		}
		entries = append(entries, gitTreeEntry{
			mode: string(raw[:sp]),
			name: string(raw[sp+1 : nul]),
			oid:  hex.EncodeToString(raw[nul+1 : nul+1+idLen]),
		})
		raw = raw[nul+1+idLen:]
	}
	return entries, nil
}
