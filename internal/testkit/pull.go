package testkit

import (
	"os"
	"path/filepath"
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

// PullRequestEvent describes a pull_request delivery.
type PullRequestEvent struct {
	Repo     string // the base repository, owner/name
	Base     string // the branch it would merge into
	Number   int
	Action   string // opened, synchronize, closed, labeled...
	Head     string // the head commit
	HeadRepo string // where the head lives; Repo when empty (not a fork)
	Label    string // for labeled
}

// PullRequestPayload returns GitHub's pull_request payload for e's action
// (testdata/github/pull_request-<action>.json, or the opened one with its
// action changed), edited to describe e.
func PullRequestPayload(e PullRequestEvent) ([]byte, error) {
	name := "pull_request-" + e.Action + ".json"
	root, err := Root()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(root, "testdata", "github", name)); err != nil {
		name = "pull_request-opened.json"
	}
	headRepo := e.HeadRepo
	if headRepo == "" {
		headRepo = e.Repo
	}
	return Fixture(name, func(p map[string]any) {
		p["action"] = e.Action
		p["number"] = e.Number
		if r, ok := p["repository"].(map[string]any); ok {
			r["full_name"] = e.Repo
			r["default_branch"] = e.Base
		}
		pr, _ := p["pull_request"].(map[string]any)
		if pr == nil {
			return
		}
		pr["number"] = e.Number
		if b, ok := pr["base"].(map[string]any); ok {
			b["ref"] = e.Base
		}
		if h, ok := pr["head"].(map[string]any); ok {
			h["sha"] = e.Head
			if hr, ok := h["repo"].(map[string]any); ok {
				hr["full_name"] = headRepo
			}
		}
		if e.Label != "" {
			p["label"] = map[string]any{"name": e.Label}
		}
	})
}
