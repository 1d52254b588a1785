package forgeapi

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/githubapi"
)

// The endpoints of Bitbucket Cloud's API that the package calls, as its
// description names them (below /2.0).
const (
	PathBitbucketCreateStatus = "/repositories/{workspace}/{repo_slug}/commit/{commit}/statuses/build"
	PathBitbucketStatuses     = "/repositories/{workspace}/{repo_slug}/commit/{commit}/statuses"
)

// bitbucketState is the state of a Bitbucket build status for a deploy's step.
func bitbucketState(s step) string {
	switch s {
	case stepStarted:
		return "INPROGRESS"
	case stepSucceeded:
		return "SUCCESSFUL"
	case stepFailed:
		return "FAILED"
	}
	return "STOPPED"
}

// bitbucketSetStatus creates or updates (by key) the build status of a
// deploy step. Bitbucket requires a URL: without the site's, the commit's
// page on bitbucket.org.
func (c *Client) bitbucketSetStatus(ctx context.Context, commit string, st status) (*http.Response, error) {
	link := st.targetURL
	if link == "" {
		link = "https://bitbucket.org/" + c.owner + "/" + c.name + "/commits/" + commit
	}
	body := map[string]string{
		"key":         c.statusName(),
		"state":       bitbucketState(st.step),
		"name":        "deploy/" + c.env,
		"description": st.description,
		"url":         link,
	}
	return c.call(ctx, http.MethodPost, PathBitbucketCreateStatus,
		c.endpoint(nil, "repositories", c.owner, c.name, "commit", commit, "statuses", "build"), body, nil)
}

// bitbucketChecks reads the commit's build statuses, every page, following
// the "next" links only on the API's origin.
func (c *Client) bitbucketChecks(ctx context.Context, commit string) ([]githubapi.Check, error) {
	var out []githubapi.Check
	next := c.endpoint(url.Values{"pagelen": {strconv.Itoa(c.perPage)}}, "repositories", c.owner, c.name, "commit", commit, "statuses")
	for page := 1; next != ""; page++ {
		if page > maxPages {
			return nil, errTooManyPages
		}
		var res struct {
			Values []struct {
				Key   string `json:"key"`
				Name  string `json:"name"`
				State string `json:"state"`
			} `json:"values"`
			Next string `json:"next"`
		}
		if _, err := c.get(ctx, PathBitbucketStatuses, next, &res); err != nil {
			return nil, err
		}
		for _, s := range res.Values {
			if s.Key == c.statusName() {
				continue
			}
			out = append(out, githubapi.Check{Kind: "build", Name: s.Key, Conclusion: s.State, State: bitbucketJudge(s.State)})
		}
		next = res.Next
	}
	return out, nil
}

// bitbucketJudge judges a build status: SUCCESSFUL passes, INPROGRESS
// waits, FAILED and STOPPED fail.
func bitbucketJudge(state string) githubapi.State {
	switch state {
	case "SUCCESSFUL":
		return githubapi.Passed
	case "INPROGRESS":
		return githubapi.Pending
	}
	return githubapi.Failed
}
