package forgeapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/githubapi"
)

// maxPages bounds the pages read from one list endpoint.
const maxPages = 50

var errTooManyPages = fmt.Errorf("more than %d pages", maxPages)

// rawJSON keeps an answer undecoded, for lists decoded page by page.
type rawJSON []byte

// UnmarshalJSON keeps a copy of data.
func (r *rawJSON) UnmarshalJSON(data []byte) error {
	*r = append((*r)[:0], data...)
	return nil
}

func decode(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decoding the answer: %w", err)
	}
	return nil
}

// Checks reads the statuses of commit and says whether it may be deployed,
// with the rules of githubapi.Client.Checks: with names, each must name a
// status (Gitea and Forgejo: a context of the combined status; GitLab: a
// job or an external status; Bitbucket: a build status's key) that
// succeeded, and one not reported yet is pending; without names, every
// status must have succeeded and at least one must exist, and on GitLab
// every pipeline of the commit must have finished. The reporter's own
// status is never counted.
func (c *Client) Checks(ctx context.Context, commit string, names []string) (githubapi.Verdict, error) {
	var (
		all []githubapi.Check
		err error
	)
	switch c.kind {
	case Gitea, Forgejo:
		all, err = c.giteaChecks(ctx, commit)
	case GitLab:
		all, err = c.gitlabChecks(ctx, commit)
	case Bitbucket:
		all, err = c.bitbucketChecks(ctx, commit)
	}
	if err != nil {
		var ae *APIError
		if errors.As(err, &ae) && ae.Forbidden() {
			err = fmt.Errorf("%w (the token may not read the commit's statuses)", err)
		}
		return githubapi.Verdict{}, fmt.Errorf("reading the statuses of %s: %w", commit, err)
	}
	return githubapi.Judge(all, names), nil
}

// statusName is the context, name or key of the reporter's status.
func (c *Client) statusName() string {
	if c.kind == Bitbucket {
		return "deploy-" + c.env
	}
	return "deploy/" + c.env
}
