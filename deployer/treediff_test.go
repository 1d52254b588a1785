//go:build unix

package deployer

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"testing"
)

// diffCommits lists what `git diff-tree -r --no-renames` lists, path for
// path, with the same new modes and blobs, for every pair of commits of
// reuseSteps: edits, mode changes, files that become folders and back,
// symlinks, nested deletions. A path it missed would be left stale in a
// reused release; one too many would be rewritten for nothing.
func TestDiffCommitsMatchesDiffTree(t *testing.T) {
	r := newRemote(t)
	var commits []string
	for _, s := range reuseSteps {
		s.edit(t, r.work)
		commits = append(commits, r.commit(nil))
	}
	d, err := New(Config{Path: filepath.Join(t.TempDir(), "site"), Remote: r.bare}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.closeCatFile()
	g := &git{cacheDir: r.bare}
	ctx := context.Background()
	for i, from := range commits {
		for j, to := range commits {
			out := mustGit(t, r.bare, "diff-tree", "-r", "-z", "--no-renames", "--raw", from, to)
			want, err := parseDiffTree(out)
			if err != nil {
				t.Fatal(err)
			}
			got, err := d.diffCommits(ctx, g, from, to)
			if err != nil {
				t.Fatalf("%d→%d: %v", i, j, err)
			}
			// Only the status of a change without its new mode may differ
			// from git's (A, M, T are all "write it").
			for p, c := range want {
				if g, ok := got[p]; !ok || g.mode != c.mode || g.object != c.object || (g.status == 'D') != (c.status == 'D') {
					t.Errorf("%s→%s (%q→%q): %s is %+v, git lists %+v", short(from), short(to), reuseSteps[i].name, reuseSteps[j].name, p, g, c)
				}
			}
			for p := range maps.Keys(got) {
				if _, ok := want[p]; !ok {
					t.Errorf("%s→%s: %s listed, git lists no change there", short(from), short(to), p)
				}
			}
		}
	}
}

// parseDiffTree parses `git diff-tree -r -z --raw` output: what
// TestDiffCommitsMatchesDiffTree compares diffCommits with.
func parseDiffTree(out string) (map[string]change, error) {
	changes := map[string]change{}
	fields := strings.Split(out, "\x00")
	for i := 0; i+1 < len(fields); i += 2 {
		meta := strings.Fields(strings.TrimPrefix(fields[i], ":"))
		if len(meta) != 5 || meta[4] == "" {
			return nil, fmt.Errorf("parsing diff-tree output: %q", fields[i])
		}
		changes[fields[i+1]] = change{mode: meta[1], object: meta[3], status: meta[4][0]}
	}
	return changes, nil
}

// BenchmarkDiffCommits compares diffCommits with `git diff-tree` (a process
// per deploy, as before) on a one-file change to a flat site of 20,000
// files, whose folder's tree is 1 MB:
//
//	go test -run '^$' -bench DiffCommits -benchtime 30x ./deployer
func BenchmarkDiffCommits(b *testing.B) {
	r := benchSite(b, 20000, 4)
	from := strings.TrimSpace(mustGit(b, r.bare, "rev-parse", "main~2"))
	to := strings.TrimSpace(mustGit(b, r.bare, "rev-parse", "main"))
	d, err := New(Config{Path: filepath.Join(b.TempDir(), "site"), Remote: r.bare}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer d.closeCatFile()
	g := &git{cacheDir: r.bare}
	ctx := context.Background()
	b.Run("cat-file", func(b *testing.B) {
		for b.Loop() {
			if _, err := d.diffCommits(ctx, g, from, to); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("diff-tree", func(b *testing.B) {
		for b.Loop() {
			out, err := g.run(ctx, r.bare, "diff-tree", "-r", "-z", "--no-renames", "--raw", from, to)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := parseDiffTree(out); err != nil {
				b.Fatal(err)
			}
		}
	})
}
