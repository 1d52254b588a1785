package testkit

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// Module is this module's path.
const Module = "github.com/caddy-webhooks/caddy-github-webhook"

// Root returns the root of this module's clone: the folder of its go.mod,
// found from this package's source file, or else from the working directory
// upwards.
func Root() (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		if dir := filepath.Dir(filepath.Dir(filepath.Dir(file))); isRoot(dir) {
			return dir, nil
		}
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the module root: %w", err)
	}
	for !isRoot(dir) {
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("finding the module root: no go.mod of " + Module + " above the working directory")
		}
		dir = parent
	}
	return dir, nil
}

// isRoot reports whether dir holds this module's go.mod.
func isRoot(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(first) == "module "+Module
}

// Fixture returns the GitHub payload testdata/github/<name> (for example
// "push-branch.json"; their origin is in testdata/github/README.md), edited
// by edit when edit is not nil. The result is compact JSON, as GitHub sends.
func Fixture(name string, edit func(payload map[string]any)) ([]byte, error) {
	root, err := Root()
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(root, "testdata", "github", name))
	if err != nil {
		return nil, fmt.Errorf("reading the fixture: %w", err)
	}
	if edit == nil {
		return b, nil
	}
	var p map[string]any
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("decoding the fixture %s: %w", name, err)
	}
	edit(p)
	out, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encoding the fixture %s: %w", name, err)
	}
	return out, nil
}

// Push describes a push to a branch.
type Push struct {
	Repo    string // owner/name
	Branch  string // the branch pushed to, without refs/heads/
	Before  string // the branch's commit before the push
	After   string // the branch's commit after: its new tip
	Message string // the tip's commit message; the fixture's when empty
}

// PushPayload returns GitHub's push payload (testdata/github/push-branch.json)
// edited to describe p: ref, before, after, the repository's owner, name and
// default branch, and a head commit (the only one in commits) with id After.
func PushPayload(p Push) ([]byte, error) {
	owner, name, ok := strings.Cut(p.Repo, "/")
	if !ok || p.Branch == "" {
		return nil, fmt.Errorf("making a push payload: want owner/name and a branch, have %q and %q", p.Repo, p.Branch)
	}
	return Fixture("push-branch.json", func(payload map[string]any) {
		payload["ref"] = "refs/heads/" + p.Branch
		payload["before"] = p.Before
		payload["after"] = p.After
		payload["created"] = false
		payload["deleted"] = false
		if r, ok := payload["repository"].(map[string]any); ok {
			r["full_name"] = p.Repo
			r["name"] = name
			r["default_branch"] = p.Branch
			r["master_branch"] = p.Branch
			if o, ok := r["owner"].(map[string]any); ok {
				o["login"] = owner
				o["name"] = owner
			}
		}
		if c, ok := payload["head_commit"].(map[string]any); ok {
			c["id"] = p.After
			if p.Message != "" {
				c["message"] = p.Message
			}
			payload["commits"] = []any{c}
		}
	})
}
