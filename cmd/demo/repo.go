package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// gitEnv is the environment of the demo's git commands: a fixed identity,
// so that commits work without any git configuration of the user's.
func gitEnv() []string {
	return append(os.Environ(),
		"GIT_AUTHOR_NAME=Demo Author", "GIT_AUTHOR_EMAIL=demo@example.com",
		"GIT_COMMITTER_NAME=Demo Author", "GIT_COMMITTER_EMAIL=demo@example.com",
		"GIT_TERMINAL_PROMPT=0",
	)
}

// git runs git with args in dir and returns its trimmed standard output.
func git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = gitEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// initRepo copies the site in src into a new working copy work, commits it
// on branch, and pushes it to a new bare repository bare: the demo's
// "GitHub".
func initRepo(src, work, bare, branch string) error {
	if err := copyTree(src, work); err != nil {
		return err
	}
	steps := []struct {
		dir  string
		args []string
	}{
		{work, []string{"init", "-q", "-b", branch}},
		{work, []string{"add", "-A"}},
		{work, []string{"commit", "-q", "-m", "Initial commit"}},
		{filepath.Dir(bare), []string{"init", "-q", "--bare", "-b", branch, bare}},
		{work, []string{"remote", "add", "origin", bare}},
		{work, []string{"push", "-q", "origin", branch}},
	}
	for _, s := range steps {
		if _, err := git(s.dir, s.args...); err != nil {
			return err
		}
	}
	return nil
}

// copyTree copies the regular files and folders under src to dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}
