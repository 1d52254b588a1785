package githubapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/go-github/v74/github"
)

// maxPages bounds the pages read from one list endpoint.
const maxPages = 50

// State is what a commit's checks say about deploying it.
type State int

const (
	// Pending: a required check has not finished, or has not been reported yet.
	Pending State = iota
	// Passed: every required check succeeded.
	Passed
	// Failed: a required check failed.
	Failed
)

// String returns "pending", "passed" or "failed".
func (s State) String() string {
	switch s {
	case Passed:
		return "passed"
	case Failed:
		return "failed"
	}
	return "pending"
}

// The kinds of check a Verdict names.
const (
	KindCheckRun = "check run"
	KindWorkflow = "workflow"
	KindStatus   = "status"
)

// Verdict is the outcome of a commit's checks. When Pending or Failed it
// names the check that holds the commit back: the first failed one if any,
// else the first pending one, in the order of the names asked for.
type Verdict struct {
	State State
	// Kind is KindCheckRun, KindWorkflow or KindStatus; empty when the check
	// is missing (Pending, Conclusion "missing") or when Passed.
	Kind string
	// Name is the check run's, workflow's or status context's name; empty
	// when no check at all exists.
	Name string
	// Conclusion is the check's conclusion or state ("failure",
	// "timed_out", "in_progress", "pending", "missing", ...).
	Conclusion string
	// Unread lists the kinds of check the token could not read ("check
	// runs"), which a required name may be hiding in; empty when all were read.
	Unread string
}

// String says what the verdict is in a line fit for a status page.
func (v Verdict) String() string {
	switch {
	case v.State == Passed:
		return "checks passed"
	case v.Conclusion == "missing" && v.Name == "":
		return "no checks reported yet"
	case v.Conclusion == "missing" && v.Unread != "":
		return fmt.Sprintf("check %q not found (the token cannot read %s)", v.Name, v.Unread)
	case v.Conclusion == "missing":
		return fmt.Sprintf("check %q not reported yet", v.Name)
	case v.State == Failed:
		return fmt.Sprintf("%s %q failed: %s", v.Kind, v.Name, v.Conclusion)
	}
	return fmt.Sprintf("%s %q is %s", v.Kind, v.Name, v.Conclusion)
}

// check is one check run, workflow run or status context, judged.
type check struct {
	kind, name, conclusion string
	state                  State
}

// Checks reads commit's check runs (every page), its commit statuses and its
// GitHub Actions workflow runs, and says whether it may be deployed. With
// names, each must be the name of a check run, a workflow or a status
// context of the commit, and every check of that name must have succeeded;
// a name not (yet) reported is pending. Without names, every check must have
// succeeded, and at least one must exist.
//
// success, neutral and skipped pass; failure, cancelled, timed_out,
// action_required, startup_failure and stale fail; a check run or workflow
// run not completed is pending. A status passes on success, is pending on
// pending and fails on failure or error.
//
// A source the token may not read (403: a fine-grained token cannot be given
// the Checks permission, so it cannot list check runs of a private
// repository) is an error without names, since "all of them" cannot be
// known; with names, the other sources are judged and Verdict.Unread says
// which was skipped.
func (c *Client) Checks(ctx context.Context, commit string, names []string) (Verdict, error) {
	sources := []struct {
		kind string
		list func(context.Context, string) ([]check, error)
	}{
		{KindCheckRun, c.checkRuns},
		{KindStatus, c.commitStatuses},
		{KindWorkflow, c.workflowRuns},
	}
	var all []check
	var unread []string
	for _, src := range sources {
		got, err := src.list(ctx, commit)
		var ae *APIError
		if err != nil && errors.As(err, &ae) && ae.Forbidden() && len(names) > 0 {
			unread = append(unread, src.kind+"s")
			continue
		}
		if err != nil {
			if ae != nil && ae.Forbidden() {
				err = fmt.Errorf("%w (the token may not read %ss: name the workflows or status contexts to require, or grant the permission)", err, src.kind)
			}
			return Verdict{}, fmt.Errorf("reading the %ss of %s: %w", src.kind, commit, err)
		}
		all = append(all, got...)
	}
	if len(unread) == len(sources) {
		return Verdict{}, fmt.Errorf("reading the checks of %s: the token may read none of check runs, statuses and workflow runs", commit)
	}
	v := verdict(all, names)
	v.Unread = strings.Join(unread, ", ")
	return v, nil
}

// verdict judges checks against the names required (none: all of them).
func verdict(all []check, names []string) Verdict {
	var failed, pending *Verdict
	note := func(ch check) {
		v := Verdict{State: ch.state, Kind: ch.kind, Name: ch.name, Conclusion: ch.conclusion}
		switch {
		case ch.state == Failed && failed == nil:
			failed = &v
		case ch.state == Pending && pending == nil:
			pending = &v
		}
	}
	if len(names) == 0 {
		if len(all) == 0 {
			return Verdict{State: Pending, Conclusion: "missing"}
		}
		for _, ch := range all {
			note(ch)
		}
	}
	for _, name := range names {
		found := false
		for _, ch := range all {
			if ch.name == name {
				found = true
				note(ch)
			}
		}
		if !found && pending == nil {
			pending = &Verdict{State: Pending, Name: name, Conclusion: "missing"}
		}
	}
	switch {
	case failed != nil:
		return *failed
	case pending != nil:
		return *pending
	}
	return Verdict{State: Passed}
}

// judgeRun judges a check run or workflow run by its status and conclusion.
func judgeRun(status, conclusion string) (State, string) {
	if status != "completed" {
		return Pending, status
	}
	switch conclusion {
	case "success", "neutral", "skipped":
		return Passed, conclusion
	}
	// failure, cancelled, timed_out, action_required, startup_failure,
	// stale, and anything GitHub may add: nothing red goes live.
	if conclusion == "" {
		conclusion = "no conclusion"
	}
	return Failed, conclusion
}

// judgeStatus judges a commit status context by its state.
func judgeStatus(state string) State {
	switch state {
	case "success":
		return Passed
	case "pending":
		return Pending
	}
	return Failed
}

func (c *Client) checkRuns(ctx context.Context, commit string) ([]check, error) {
	var out []check
	opts := &github.ListCheckRunsOptions{ListOptions: github.ListOptions{PerPage: c.perPage}}
	for page := 0; ; page++ {
		if page == maxPages {
			return nil, fmt.Errorf("more than %d pages", maxPages)
		}
		var res *github.ListCheckRunsResults
		resp, err := c.get(ctx, PathCheckRuns, func(ctx context.Context) (*github.Response, error) {
			var resp *github.Response
			var err error
			res, resp, err = c.gh.Checks.ListCheckRunsForRef(ctx, c.owner, c.repo, commit, opts)
			return resp, err
		})
		if err != nil {
			return nil, err
		}
		for _, run := range res.CheckRuns {
			state, concl := judgeRun(run.GetStatus(), run.GetConclusion())
			out = append(out, check{kind: KindCheckRun, name: run.GetName(), state: state, conclusion: concl})
		}
		if resp.NextPage == 0 {
			return out, nil
		}
		opts.Page = resp.NextPage
	}
}

func (c *Client) commitStatuses(ctx context.Context, commit string) ([]check, error) {
	var out []check
	opts := &github.ListOptions{PerPage: c.perPage}
	for page := 0; ; page++ {
		if page == maxPages {
			return nil, fmt.Errorf("more than %d pages", maxPages)
		}
		var res *github.CombinedStatus
		resp, err := c.get(ctx, PathCommitStatus, func(ctx context.Context) (*github.Response, error) {
			var resp *github.Response
			var err error
			res, resp, err = c.gh.Repositories.GetCombinedStatus(ctx, c.owner, c.repo, commit, opts)
			return resp, err
		})
		if err != nil {
			return nil, err
		}
		for _, st := range res.Statuses {
			out = append(out, check{kind: KindStatus, name: st.GetContext(), state: judgeStatus(st.GetState()), conclusion: st.GetState()})
		}
		if resp.NextPage == 0 {
			return out, nil
		}
		opts.Page = resp.NextPage
	}
}

func (c *Client) workflowRuns(ctx context.Context, commit string) ([]check, error) {
	var out []check
	opts := &github.ListWorkflowRunsOptions{HeadSHA: commit, ListOptions: github.ListOptions{PerPage: c.perPage}}
	for page := 0; ; page++ {
		if page == maxPages {
			return nil, fmt.Errorf("more than %d pages", maxPages)
		}
		var res *github.WorkflowRuns
		resp, err := c.get(ctx, PathWorkflowRuns, func(ctx context.Context) (*github.Response, error) {
			var resp *github.Response
			var err error
			res, resp, err = c.gh.Actions.ListRepositoryWorkflowRuns(ctx, c.owner, c.repo, opts)
			return resp, err
		})
		if err != nil {
			return nil, err
		}
		for _, run := range res.WorkflowRuns {
			state, concl := judgeRun(run.GetStatus(), run.GetConclusion())
			out = append(out, check{kind: KindWorkflow, name: run.GetName(), state: state, conclusion: concl})
		}
		if resp.NextPage == 0 {
			return out, nil
		}
		opts.Page = resp.NextPage
	}
}

// get runs one GET and counts it; the gate's caller retries, not this.
func (c *Client) get(ctx context.Context, path string, fn func(context.Context) (*github.Response, error)) (*github.Response, error) {
	var gr *github.Response
	_, err := c.call(ctx, http.MethodGet, path, func(ctx context.Context) (*github.Response, error) {
		var err error
		gr, err = fn(ctx)
		return gr, err
	})
	if err != nil {
		c.onRequest(path, ResultError)
		return nil, err
	}
	c.onRequest(path, ResultOK)
	return gr, nil
}
