package testkit

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Repo is a site's history as GitHub would hold it: a bare repository, the
// remote a deployer fetches from, and a working clone that commits and pushes
// to it. Its git commands read no user or system configuration.
type Repo struct {
	Bare   string // the bare repository (a path; "file://"+Bare is a URL)
	Work   string // the working clone
	Branch string // the branch Commit pushes to
}

// NewRepo creates dir/remote.git, a bare repository whose default branch is
// branch, and dir/work, a working clone with it as origin. It commits
// nothing: the remote has no branch until the first Commit.
func NewRepo(dir, branch string) (*Repo, error) {
	r := &Repo{Bare: filepath.Join(dir, "remote.git"), Work: filepath.Join(dir, "work"), Branch: branch}
	for _, step := range [][]string{
		{"init", "--quiet", "--bare", "--initial-branch=" + branch, r.Bare},
		{"init", "--quiet", "--initial-branch=" + branch, r.Work},
		{"-C", r.Work, "remote", "add", "origin", r.Bare},
	} {
		if _, err := git(dir, step...); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// gitEnv is the environment of Repo's git commands: a fixed identity and no
// configuration but the repository's own.
func gitEnv() []string {
	return append(os.Environ(),
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+os.DevNull, "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=Testkit", "GIT_AUTHOR_EMAIL=testkit@example.com",
		"GIT_COMMITTER_NAME=Testkit", "GIT_COMMITTER_EMAIL=testkit@example.com",
	)
}

// git runs git with args in dir and returns its standard output, trimmed.
func git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = gitEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// Git runs git with args in the working clone and returns its output.
func (r *Repo) Git(args ...string) (string, error) { return git(r.Work, args...) }

// Write writes files (names relative to the working clone, folders made as
// needed) with mode 0644.
func (r *Repo) Write(files map[string]string) error {
	for name, content := range files {
		p := filepath.Join(r.Work, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
	}
	return nil
}

// Remove removes files of the working clone.
func (r *Repo) Remove(names ...string) error {
	for _, name := range names {
		if err := os.Remove(filepath.Join(r.Work, name)); err != nil {
			return fmt.Errorf("removing %s: %w", name, err)
		}
	}
	return nil
}

// CopyFrom copies the folders and regular files under src (a site in
// testdata/sites, say) into the working clone.
func (r *Repo) CopyFrom(src string) error {
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(r.Work, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case !d.Type().IsRegular():
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	return nil
}

// Commit writes files, commits everything in the working clone with message
// msg (an empty commit if nothing changed), pushes it to the branch of the
// bare repository and returns the new commit.
func (r *Repo) Commit(msg string, files map[string]string) (string, error) {
	if err := r.Write(files); err != nil {
		return "", err
	}
	for _, step := range [][]string{
		{"add", "--all"},
		{"commit", "--quiet", "--allow-empty", "-m", msg},
		{"push", "--quiet", "origin", "HEAD:refs/heads/" + r.Branch},
	} {
		if _, err := r.Git(step...); err != nil {
			return "", err
		}
	}
	return r.Git("rev-parse", "HEAD")
}

// Remote is a Repo for tests, in a temporary folder of the test, on branch
// main: its methods fail the test instead of returning an error.
type Remote struct {
	*Repo
	tb TB
}

// NewRemote creates a Remote on branch main in tb's temporary folder.
func NewRemote(tb TB) *Remote {
	tb.Helper()
	return NewRemoteOn(tb, "main")
}

// NewRemoteOn creates a Remote on branch in tb's temporary folder.
func NewRemoteOn(tb TB, branch string) *Remote {
	tb.Helper()
	repo, err := NewRepo(tb.TempDir(), branch)
	if err != nil {
		tb.Fatalf("making a remote: %v", err)
	}
	return &Remote{Repo: repo, tb: tb}
}

// Git is Repo.Git.
func (r *Remote) Git(args ...string) string {
	r.tb.Helper()
	out, err := r.Repo.Git(args...)
	if err != nil {
		r.tb.Fatalf("%v", err)
	}
	return out
}

// Write is Repo.Write.
func (r *Remote) Write(files map[string]string) {
	r.tb.Helper()
	if err := r.Repo.Write(files); err != nil {
		r.tb.Fatalf("%v", err)
	}
}

// Remove is Repo.Remove.
func (r *Remote) Remove(names ...string) {
	r.tb.Helper()
	if err := r.Repo.Remove(names...); err != nil {
		r.tb.Fatalf("%v", err)
	}
}

// CopyFrom is Repo.CopyFrom.
func (r *Remote) CopyFrom(src string) {
	r.tb.Helper()
	if err := r.Repo.CopyFrom(src); err != nil {
		r.tb.Fatalf("%v", err)
	}
}

// Commit is Repo.Commit.
func (r *Remote) Commit(msg string, files map[string]string) string {
	r.tb.Helper()
	commit, err := r.Repo.Commit(msg, files)
	if err != nil {
		r.tb.Fatalf("%v", err)
	}
	return commit
}
