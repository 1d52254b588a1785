package deployer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// A deploy without commands publishes the commit's tree as it is. Writing
// every file of a large site again for a one-file change costs as much as a
// fresh clone; instead linkRelease hard-links the unchanged files from the
// live release and writes only what changed. This is safe only because
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

// change is one line of git diff-tree's raw output.
type change struct {
	mode   string // the new mode: 100644, 100755, 120000 (symlink), 160000 (submodule)
	object string
	status byte // A, M, D, T
}

var errNeedsCheckout = errors.New("the change needs a full checkout")

// linkRelease makes dir a copy of commit's tree, given prevDir, a pristine
// release of prevCommit: unchanged files are hard links into prevDir.
func linkRelease(ctx context.Context, g *git, prevDir, prevCommit, dir, commit string) error {
	out, err := g.run(ctx, g.cacheDir, "diff-tree", "-r", "-z", "--no-renames", "--raw", prevCommit, commit)
	if err != nil {
		return fmt.Errorf("listing changes: %w", err)
	}
	changes, err := parseDiffTree(out)
	if err != nil {
		return err
	}
	for p, c := range changes {
		if c.mode == "160000" || filepath.Base(p) == ".gitattributes" {
			return errNeedsCheckout
		}
	}

	// Link what did not change.
	made := map[string]bool{}
	mkdir := func(rel string) error {
		if rel == "." || made[rel] {
			return nil
		}
		made[rel] = true
		return os.MkdirAll(filepath.Join(dir, rel), 0o755)
	}
	if err := mkdir("."); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
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
	var paths []string
	for p, c := range changes {
		if c.status != 'D' {
			paths = append(paths, p)
		}
	}
	if len(paths) == 0 {
		return nil
	}
	return writeObjects(ctx, g, dir, paths, changes, mkdir)
}

// parseDiffTree parses `git diff-tree -r -z --raw` output.
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

// writeObjects writes the blobs of paths into dir through one
// `git cat-file --batch`, each to a temporary file renamed into place.
func writeObjects(ctx context.Context, g *git, dir string, paths []string, changes map[string]change, mkdir func(string) error) error {
	cmd := exec.CommandContext(ctx, "git", "cat-file", "--batch")
	cmd.Dir = g.cacheDir
	cmd.Env = g.env()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var req bytes.Buffer
	for _, p := range paths {
		req.WriteString(changes[p].object + "\n")
	}
	cmd.Stdin = &req
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("git cat-file: %w", err)
	}
	r := bufio.NewReader(stdout)
	werr := func() error {
		for _, p := range paths {
			c := changes[p]
			header, err := r.ReadString('\n')
			if err != nil {
				return err
			}
			f := strings.Fields(header)
			if len(f) != 3 || f[0] != c.object || f[1] != "blob" {
				return fmt.Errorf("unexpected object header %q", strings.TrimSpace(header))
			}
			size, err := strconv.ParseInt(f[2], 10, 64)
			if err != nil {
				return err
			}
			if err := mkdir(filepath.Dir(filepath.FromSlash(p))); err != nil {
				return err
			}
			if err := writeObject(filepath.Join(dir, filepath.FromSlash(p)), c.mode, io.LimitReader(r, size)); err != nil {
				return err
			}
			if _, err := r.Discard(1); err != nil { // the newline after the content
				return err
			}
		}
		return nil
	}()
	io.Copy(io.Discard, r)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("git cat-file: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	if werr != nil {
		return fmt.Errorf("writing changed files: %w", werr)
	}
	return nil
}

// writeObject writes one file (or symlink) of mode with content to p.
func writeObject(p, mode string, content io.Reader) error {
	switch mode {
	case "120000":
		target, err := io.ReadAll(content)
		if err != nil {
			return err
		}
		return os.Symlink(string(target), p)
	case "100644", "100755":
	default:
		return errNeedsCheckout
	}
	perm := os.FileMode(0o644)
	if mode == "100755" {
		perm = 0o755
	}
	tmp := p + ".tmp-deploy"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, content); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, p)
}
