package forgeapi

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/githubapi"
)

// The endpoints of GitLab's REST API that the package calls, as GitLab's
// documentation names them (below /api/v4).
const (
	PathGitLabCreateStatus = "/projects/:id/statuses/:sha"
	PathGitLabStatuses     = "/projects/:id/repository/commits/:sha/statuses"
	PathGitLabPipelines    = "/projects/:id/pipelines"
)

// gitlabState is the state of a GitLab commit status for a deploy's step.
func gitlabState(s step) string {
	switch s {
	case stepStarted:
		return "running"
	case stepSucceeded:
		return "success"
	case stepFailed:
		return "failed"
	}
	return "canceled"
}

// gitlabSetStatus sets the commit status of a deploy step.
func (c *Client) gitlabSetStatus(ctx context.Context, commit string, st status) (*http.Response, error) {
	body := map[string]string{
		"state":       gitlabState(st.step),
		"name":        c.statusName(),
		"description": st.description,
	}
	if st.targetURL != "" {
		body["target_url"] = st.targetURL
	}
	return c.call(ctx, http.MethodPost, PathGitLabCreateStatus,
		c.endpoint(nil, "projects", c.repo, "statuses", commit), body, nil)
}

// gitlabChecks reads the latest status of each job and external status of
// the commit, and its pipelines: a pipeline not finished stands, as a
// GitHub check suite does, for jobs that may not have a status yet.
func (c *Client) gitlabChecks(ctx context.Context, commit string) ([]githubapi.Check, error) {
	var out []githubapi.Check
	err := c.gitlabPages(ctx, PathGitLabStatuses, func(q url.Values) string {
		return c.endpoint(q, "projects", c.repo, "repository", "commits", commit, "statuses")
	}, func(page []byte) error {
		var res []struct {
			Name         string `json:"name"`
			Status       string `json:"status"`
			AllowFailure bool   `json:"allow_failure"`
		}
		if err := decode(page, &res); err != nil {
			return err
		}
		for _, s := range res {
			if s.Name == c.statusName() {
				continue
			}
			out = append(out, githubapi.Check{Kind: "job", Name: s.Name, Conclusion: s.Status, State: gitlabJudge(s.Status, s.AllowFailure)})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = c.gitlabPages(ctx, PathGitLabPipelines, func(q url.Values) string {
		q.Set("sha", commit)
		return c.endpoint(q, "projects", c.repo, "pipelines")
	}, func(page []byte) error {
		var res []struct {
			ID     int64  `json:"id"`
			IID    int64  `json:"iid"`
			Status string `json:"status"`
			Source string `json:"source"`
		}
		if err := decode(page, &res); err != nil {
			return err
		}
		for _, p := range res {
			// An external pipeline holds statuses set through the API
			// (this reporter's among them), listed above; a finished
			// pipeline's jobs are listed above too.
			if p.Source == "external" || gitlabJudge(p.Status, false) != githubapi.Pending {
				continue
			}
			n := p.IID
			if n == 0 {
				n = p.ID
			}
			out = append(out, githubapi.Check{Kind: "pipeline", Name: fmt.Sprintf("pipeline #%d", n), Conclusion: p.Status, State: githubapi.Pending, Group: true})
		}
		return nil
	})
	return out, err
}

// gitlabPages reads every page of a GitLab list, following X-Next-Page.
func (c *Client) gitlabPages(ctx context.Context, path string, at func(url.Values) string, each func([]byte) error) error {
	next := "1"
	for page := 1; next != ""; page++ {
		if page > maxPages {
			return errTooManyPages
		}
		var raw rawJSON
		q := url.Values{"page": {next}, "per_page": {strconv.Itoa(c.perPage)}}
		resp, err := c.get(ctx, path, at(q), &raw)
		if err != nil {
			return err
		}
		if err := each(raw); err != nil {
			return fmt.Errorf("%s api: GET %s: %w", c.kind, path, err)
		}
		next = resp.Header.Get("X-Next-Page")
	}
	return nil
}

// gitlabJudge judges a GitLab job, commit status or pipeline status:
// success and skipped pass, and failed or canceled when failure is allowed;
// failed and canceled fail; created, waiting_for_resource, preparing,
// pending, running, scheduled and manual (a job that waits for someone to
// start it) wait.
func gitlabJudge(state string, allowFailure bool) githubapi.State {
	switch state {
	case "success", "skipped":
		return githubapi.Passed
	case "failed", "canceled", "canceling":
		if allowFailure {
			return githubapi.Passed
		}
		return githubapi.Failed
	case "manual":
		if allowFailure {
			return githubapi.Passed
		}
	}
	return githubapi.Pending
}
