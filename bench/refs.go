package main

import (
	"bufio"
	"fmt"
	"io"
	"os/exec"
	"strings"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// staged is a series of commits made before a scenario measures anything,
// so that the harness's own git work does not weigh on it: they wait on a
// side ref of the remote, and move moves the branch to one of them in one
// transaction of a long-running git update-ref --stdin (a push without the
// transfer, and no process to start).
type staged struct {
	shas []string // shas[0] is the commit they follow
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
}

// stage makes n commits in repo's working clone after first, the i-th
// holding files(i), and pushes them to the side ref. The caller closes it.
func (r *run) stage(repo *testkit.Repo, first string, n int, files func(i int) map[string]string) (*staged, error) {
	s := &staged{shas: []string{first}}
	for i := 1; i <= n; i++ {
		if err := repo.Write(files(i)); err != nil {
			return nil, err
		}
		for _, args := range [][]string{{"add", "--all"}, {"commit", "--quiet", "--allow-empty", "-m", fmt.Sprintf("version %d", i)}} {
			if _, err := repo.Git(args...); err != nil {
				return nil, err
			}
		}
		sha, err := repo.Git("rev-parse", "HEAD")
		if err != nil {
			return nil, err
		}
		s.shas = append(s.shas, sha)
	}
	if _, err := repo.Git("push", "--quiet", "origin", "HEAD:refs/bench/staging"); err != nil {
		return nil, err
	}
	s.cmd = exec.Command("git", "update-ref", "--stdin")
	s.cmd.Dir, s.cmd.Env = repo.Bare, r.baseEnv()
	in, err := s.cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	s.in, s.out = in, bufio.NewReader(out)
	return s, s.cmd.Start()
}

// move points the bench branch at the i-th staged commit, committed when it
// returns.
func (s *staged) move(i int) error {
	if _, err := fmt.Fprintf(s.in, "start\nupdate refs/heads/%s %s\ncommit\n", benchBranch, s.shas[i]); err != nil {
		return fmt.Errorf("git update-ref: %w", err)
	}
	for {
		line, err := s.out.ReadString('\n')
		if err != nil {
			return fmt.Errorf("git update-ref: %w", err)
		}
		if strings.TrimSpace(line) == "commit: ok" {
			return nil
		}
	}
}

func (s *staged) close() {
	s.in.Close()
	s.cmd.Wait()
}
