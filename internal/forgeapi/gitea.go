package forgeapi

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/githubapi"
)

// The endpoints of Gitea's and Forgejo's API that the package calls, as
// their description names them (below /api/v1).
const (
	PathGiteaCreateStatus   = "/repos/{owner}/{repo}/statuses/{sha}"
	PathGiteaCombinedStatus = "/repos/{owner}/{repo}/commits/{ref}/status"
)

// giteaState is the state of a Gitea commit status for a deploy's step.
func giteaState(s step) string {
	switch s {
	case stepStarted:
		return "pending"
	case stepSucceeded:
		return "success"
	case stepFailed:
		return "failure"
	}
	return "error"
}

// giteaSetStatus creates the commit status of a deploy step.
func (c *Client) giteaSetStatus(ctx context.Context, commit string, st status) (*http.Response, error) {
	body := map[string]string{
		"state":       giteaState(st.step),
		"context":     c.statusName(),
		"description": st.description,
	}
	if st.targetURL != "" {
		body["target_url"] = st.targetURL
	}
	return c.call(ctx, http.MethodPost, PathGiteaCreateStatus,
		c.endpoint(nil, "repos", c.owner, c.name, "statuses", commit), body, nil)
}

// giteaChecks reads the commit's combined status, every page: the latest
// status of each context.
func (c *Client) giteaChecks(ctx context.Context, commit string) ([]githubapi.Check, error) {
	var out []githubapi.Check
	seen := 0
	for page := 1; ; page++ {
		if page > maxPages {
			return nil, errTooManyPages
		}
		var res struct {
			Statuses []struct {
				Context string `json:"context"`
				Status  string `json:"status"`
			} `json:"statuses"`
		}
		q := url.Values{"page": {strconv.Itoa(page)}, "limit": {strconv.Itoa(c.perPage)}}
		resp, err := c.get(ctx, PathGiteaCombinedStatus, c.endpoint(q, "repos", c.owner, c.name, "commits", commit, "status"), &res)
		if err != nil {
			return nil, err
		}
		for _, s := range res.Statuses {
			if s.Context == c.statusName() {
				continue
			}
			out = append(out, githubapi.Check{Kind: "status", Name: s.Context, Conclusion: s.Status, State: giteaJudge(s.Status)})
		}
		seen += len(res.Statuses)
		// X-Total-Count decides: a server whose MAX_RESPONSE_ITEMS is below
		// the limit asked for answers shorter pages that are not the last.
		total, err := strconv.Atoi(resp.Header.Get("X-Total-Count"))
		switch {
		case len(res.Statuses) == 0:
			return out, nil
		case err == nil && seen >= total:
			return out, nil
		case err != nil && len(res.Statuses) < c.perPage:
			return out, nil
		}
	}
}

// giteaJudge judges a Gitea commit status: success and skipped (Gitea
// 1.27) pass, pending waits; failure, error and warning fail (nothing amber
// goes live either).
func giteaJudge(state string) githubapi.State {
	switch state {
	case "success", "skipped":
		return githubapi.Passed
	case "pending":
		return githubapi.Pending
	}
	return githubapi.Failed
}
