package githubapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path"
	"regexp"
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
	KindCheckRun   = "check run"
	KindWorkflow   = "workflow"
	KindStatus     = "status"
	KindCheckSuite = "check suite"
)

// Requirement is one check a commit must pass, as written in
// require_checks: a name, and optionally the source it must come from, as
// branch protection pins a required check to an app.
//
//   - "CI": a check run, a workflow or a status context named CI, from any
//     source;
//   - "CI@app/github-actions": a check run named CI created by the GitHub App
//     whose slug is github-actions (the app.slug of the check run);
//   - "CI@.github/workflows/ci.yml": a GitHub Actions workflow named CI whose
//     run comes from that workflow file.
//
// A name that holds "@" followed by anything else is a plain name.
type Requirement struct {
	Name string
	// App is the slug of the GitHub App whose check run it must be.
	App string
	// Workflow is the workflow file whose run it must be.
	Workflow string
}

const (
	appPrefix      = "app/"
	workflowPrefix = ".github/workflows/"
)

var appSlug = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// ParseRequirement reads one name of require_checks (see Requirement).
func ParseRequirement(s string) (Requirement, error) {
	if strings.TrimSpace(s) == "" {
		return Requirement{}, errors.New("empty check name")
	}
	name, source := s, ""
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		if src := s[i+1:]; strings.HasPrefix(src, appPrefix) || strings.HasPrefix(src, workflowPrefix) {
			name, source = s[:i], src
		}
	}
	r := Requirement{Name: name}
	if source != "" && strings.TrimSpace(name) == "" {
		return Requirement{}, fmt.Errorf("%q: no check name before @", s)
	}
	switch {
	case strings.HasPrefix(source, appPrefix):
		r.App = strings.TrimPrefix(source, appPrefix)
		if !appSlug.MatchString(r.App) {
			return Requirement{}, fmt.Errorf("%q: %q is not a GitHub App's slug (lower-case letters, digits and -, as in github.com/apps/<slug>)", s, r.App)
		}
	case source != "":
		r.Workflow = source
		file := strings.TrimPrefix(source, workflowPrefix)
		ext := path.Ext(file)
		if strings.Contains(file, "/") || (ext != ".yml" && ext != ".yaml") || file == ext {
			return Requirement{}, fmt.Errorf("%q: %q is not a workflow file (.github/workflows/<name>.yml)", s, source)
		}
	}
	return r, nil
}

// String writes r as require_checks takes it.
func (r Requirement) String() string {
	switch {
	case r.App != "":
		return r.Name + "@" + appPrefix + r.App
	case r.Workflow != "":
		return r.Name + "@" + r.Workflow
	}
	return r.Name
}

// matches reports whether ch is a check that r asks for.
func (r Requirement) matches(ch check) bool {
	if ch.name != r.Name {
		return false
	}
	switch {
	case r.App != "":
		return ch.kind == KindCheckRun && ch.source == r.App
	case r.Workflow != "":
		// GitHub gives a run's path as ".github/workflows/ci.yml", or with
		// the ref it was read at: ".github/workflows/ci.yml@main".
		return ch.kind == KindWorkflow && (ch.source == r.Workflow || strings.HasPrefix(ch.source, r.Workflow+"@"))
	}
	return ch.kind != KindCheckSuite
}

// Verdict is the outcome of a commit's checks. When Pending or Failed it
// names the check that holds the commit back: the first failed one if any,
// else the first pending one, in the order of the names asked for.
type Verdict struct {
	State State
	// Kind is KindCheckRun, KindWorkflow, KindStatus or KindCheckSuite;
	// empty when the check is missing (Pending, Conclusion "missing") or
	// when Passed.
	Kind string
	// Name is the check run's, workflow's or status context's name, a
	// check suite's app slug, or the requirement as written when missing;
	// empty when no check at all exists.
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

// check is one check run, workflow run, status context or check suite, judged.
type check struct {
	kind, name, conclusion string
	// source is a check run's app slug, a workflow run's path.
	source string
	state  State
}

// Checks reads commit's check runs (every page), its commit statuses and its
// GitHub Actions workflow runs, and says whether it may be deployed. With
// names (each a Requirement as ParseRequirement reads it), each must name a
// check run, a workflow or a status context of the commit, from the source
// it pins if it pins one, and every check it matches must have succeeded; a
// name not (yet) reported is pending. Without names, Checks also reads the
// commit's check suites, which GitHub creates when the commit is pushed, one
// per app that runs checks, before any of them reported: every check and
// every suite must have succeeded (a suite that has no run yet is pending),
// and at least one check must exist. So the first check to report, say a
// status context of a CLA bot, does not let the commit through while the
// CI's suite is still queued.
//
// success, neutral and skipped pass; failure, cancelled, timed_out,
// action_required, startup_failure and stale fail; a check run, workflow
// run or check suite not completed is pending. A status passes on success,
// is pending on pending and fails on failure or error.
//
// A source the token may not read (403: a fine-grained token cannot be given
// the Checks permission, so it cannot list check runs of a private
// repository) is an error without names, since "all of them" cannot be
// known; with names, the other sources are judged and Verdict.Unread says
// which was skipped.
func (c *Client) Checks(ctx context.Context, commit string, names []string) (Verdict, error) {
	reqs := make([]Requirement, len(names))
	for i, name := range names {
		r, err := ParseRequirement(name)
		if err != nil {
			return Verdict{}, fmt.Errorf("reading the checks of %s: %w", commit, err)
		}
		reqs[i] = r
	}
	type source struct {
		kind string
		list func(context.Context, string) ([]check, error)
	}
	sources := []source{
		{KindCheckRun, c.checkRuns},
		{KindStatus, c.commitStatuses},
		{KindWorkflow, c.workflowRuns},
	}
	if len(names) == 0 {
		sources = append(sources, source{KindCheckSuite, c.checkSuites})
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
	v := verdict(all, reqs)
	v.Unread = strings.Join(unread, ", ")
	return v, nil
}

// verdict judges checks against the requirements (none: all of them).
func verdict(all []check, reqs []Requirement) Verdict {
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
	if len(reqs) == 0 {
		if len(all) == 0 {
			return Verdict{State: Pending, Conclusion: "missing"}
		}
		for _, ch := range all {
			note(ch)
		}
	}
	for _, r := range reqs {
		found := false
		for _, ch := range all {
			if r.matches(ch) {
				found = true
				note(ch)
			}
		}
		if !found && pending == nil {
			pending = &Verdict{State: Pending, Name: r.String(), Conclusion: "missing"}
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
			out = append(out, check{kind: KindCheckRun, name: run.GetName(), source: run.GetApp().GetSlug(), state: state, conclusion: concl})
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
			out = append(out, check{kind: KindWorkflow, name: run.GetName(), source: run.GetPath(), state: state, conclusion: concl})
		}
		if resp.NextPage == 0 {
			return out, nil
		}
		opts.Page = resp.NextPage
	}
}

// checkSuites lists the commit's check suites as checks named by their app's
// slug.
func (c *Client) checkSuites(ctx context.Context, commit string) ([]check, error) {
	var out []check
	opts := &github.ListCheckSuiteOptions{ListOptions: github.ListOptions{PerPage: c.perPage}}
	for page := 0; ; page++ {
		if page == maxPages {
			return nil, fmt.Errorf("more than %d pages", maxPages)
		}
		var res *github.ListCheckSuiteResults
		resp, err := c.get(ctx, PathCheckSuites, func(ctx context.Context) (*github.Response, error) {
			var resp *github.Response
			var err error
			res, resp, err = c.gh.Checks.ListCheckSuitesForRef(ctx, c.owner, c.repo, commit, opts)
			return resp, err
		})
		if err != nil {
			return nil, err
		}
		for _, suite := range res.CheckSuites {
			// A suite GitHub made at push time stays queued, with no
			// run, until its app reports: pending.
			state, concl := judgeRun(suite.GetStatus(), suite.GetConclusion())
			name := suite.GetApp().GetSlug()
			if name == "" {
				name = fmt.Sprintf("suite %d", suite.GetID())
			}
			out = append(out, check{kind: KindCheckSuite, name: name, source: name, state: state, conclusion: concl})
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
