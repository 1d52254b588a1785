package testkit

import (
	"strconv"
	"strings"
)

// PullRequest commits files on top of the branch pull request number's
// head had (or, for its first commit, of the branch's tip), and pushes the
// commit to refs/pull/<number>/head of the bare repository, as GitHub keeps
// a pull request's head in the base repository. The working clone is left
// on the branch, as it was. It returns the new head.
func (r *Repo) PullRequest(number int, msg string, files map[string]string) (string, error) {
	local := "pr-" + strconv.Itoa(number)
	if _, err := r.Git("rev-parse", "--verify", "--quiet", "refs/heads/"+local); err != nil {
		if _, err := r.Git("branch", local, "HEAD"); err != nil {
			return "", err
		}
	}
	if _, err := r.Git("checkout", "--quiet", local); err != nil {
		return "", err
	}
	defer r.Git("checkout", "--quiet", r.Branch)
	if err := r.Write(files); err != nil {
		return "", err
	}
	for _, step := range [][]string{
		{"add", "--all"},
		{"commit", "--quiet", "--allow-empty", "-m", msg},
		{"push", "--quiet", "--force", "origin", "HEAD:refs/pull/" + strconv.Itoa(number) + "/head"},
	} {
		if _, err := r.Git(step...); err != nil {
			return "", err
		}
	}
	out, err := r.Git("rev-parse", "HEAD")
	return strings.TrimSpace(out), err
}

// PullRequest is Repo.PullRequest.
func (r *Remote) PullRequest(number int, msg string, files map[string]string) string {
	r.tb.Helper()
	head, err := r.Repo.PullRequest(number, msg, files)
	if err != nil {
		r.tb.Fatalf("%v", err)
	}
	return head
}
