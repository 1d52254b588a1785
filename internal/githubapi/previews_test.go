package githubapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/githubtest"
)

const (
	previewURL = "https://pr-7.preview.blog.example.com"
	shaD       = "4444444444444444444444444444444444444444"
	shaE       = "5555555555555555555555555555555555555555"
)

// previewReporter returns a PreviewReporter on e's client with a fake
// clock, not started.
func (e *env) previewReporter(t *testing.T, cfg PreviewConfig) (*PreviewReporter, *fakeClock) {
	t.Helper()
	r := e.client.NewPreviewReporter(cfg)
	clock := newFakeClock()
	r.now, r.sleep = clock.Now, clock.Sleep
	r.base, r.maxBackoff = time.Second, 8*time.Second
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = r.Close(ctx)
	})
	return r, clock
}

func flushPreviews(t *testing.T, r *PreviewReporter) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func pr7(head string) Preview { return Preview{Number: 7, Head: head, URL: previewURL} }

// ours returns the comments on pull request n that githubtest's token user wrote.
func ours(srv *githubtest.Server, n int) []githubtest.Comment {
	var out []githubtest.Comment
	for _, c := range srv.Comments(n) {
		if c.User == githubtest.Login {
			out = append(out, c)
		}
	}
	return out
}

// previewStatuses lists the states of the "preview" commit statuses posted on sha.
func previewStatuses(srv *githubtest.Server, sha string) []string {
	var out []string
	for _, p := range srv.StatusPosts() {
		if p.SHA == sha && p.Context == PreviewContext {
			out = append(out, p.State)
		}
	}
	return out
}

// TestPreviewSequence drives a pull request through pushes, a failed
// build and its closing, and checks what GitHub shows: one transient,
// non-production environment pr-7 whose deployments have their statuses
// in order and end inactive, the commit statuses of each head, and exactly
// one comment, edited in place.
func TestPreviewSequence(t *testing.T) {
	e := setup(t, githubtest.Options{Token: token}, "")
	e.srv.SetPullRequest(githubtest.PullRequest{Number: 7, Head: shaA})
	r, clock := e.previewReporter(t, PreviewConfig{Deployments: true})
	r.Start()
	r.Building(pr7(shaA))
	r.Live(pr7(shaA))
	r.Building(pr7(shaB))
	r.Live(pr7(shaB))
	r.Building(pr7(shaC))
	r.Failed(pr7(shaC), "build failed: hugo exited 1 <script>")
	r.Removed(Preview{Number: 7}, "the pull request was closed")
	flushPreviews(t, r)

	deps := e.srv.Deployments()
	want := []struct {
		sha    string
		states []string
	}{
		{shaA, []string{"in_progress", "success", "inactive"}},
		{shaB, []string{"in_progress", "success", "inactive"}},
		{shaC, []string{"in_progress", "failure", "inactive"}},
	}
	if len(deps) != len(want) {
		t.Fatalf("GitHub shows %d deployments, want %d: %+v", len(deps), len(want), deps)
	}
	for i, w := range want {
		d := deps[i]
		if d.SHA != w.sha || d.Environment != "pr-7" || !d.Transient || d.Production || d.AutoMerge || d.RequiredContexts == nil || len(d.RequiredContexts) != 0 {
			t.Errorf("deployment %d = %+v, want %s in the transient, non-production environment pr-7, auto_merge false, required_contexts []", i, d, w.sha)
		}
		if !reflect.DeepEqual(statesOf(d), w.states) {
			t.Errorf("deployment %d statuses = %v, want %v", i, statesOf(d), w.states)
		}
	}
	if st := deps[0].Statuses[1]; st.EnvironmentURL != previewURL {
		t.Errorf("success status environment_url = %q, want %q", st.EnvironmentURL, previewURL)
	}
	if st := deps[2].Statuses[1]; st.Description != "build failed: hugo exited 1 <script>" {
		t.Errorf("failure description = %q", st.Description)
	}
	for sha, w := range map[string][]string{shaA: {"pending", "success"}, shaB: {"pending", "success"}, shaC: {"pending", "failure"}} {
		if got := previewStatuses(e.srv, sha); !reflect.DeepEqual(got, w) {
			t.Errorf("commit statuses of %s = %v, want %v", sha[:4], got, w)
		}
	}
	for _, p := range e.srv.StatusPosts() {
		if p.State == "success" && p.TargetURL != previewURL {
			t.Errorf("success commit status links %q, want %q", p.TargetURL, previewURL)
		}
	}

	cs := e.srv.Comments(7)
	if len(cs) != 1 {
		t.Fatalf("pull request 7 has %d comments, want exactly one: %+v", len(cs), cs)
	}
	c := cs[0]
	if c.User != githubtest.Login || !strings.HasPrefix(c.Body, commentMarker) || c.Edits != 3 {
		t.Errorf("comment = %+v, want ours, starting with the marker, edited 3 times (live B, failed C, removed)", c)
	}
	if !strings.Contains(c.Body, "removed") || !strings.Contains(c.Body, "closed") || strings.Contains(c.Body, previewURL) {
		t.Errorf("comment after removal = %q, want it to say the preview was removed, without the dead link", c.Body)
	}
	if e.counts.total(ResultOK) != len(e.srv.Requests()) || e.counts.total(ResultRetry)+e.counts.total(ResultDropped)+e.counts.total(ResultError) != 0 {
		t.Errorf("counts = %s, want every request ok", e.counts)
	}
	if w := clock.Waits(); len(w) != 0 {
		t.Errorf("waits = %v, want none", w)
	}
	perOp := map[string]int{}
	for _, req := range e.srv.Requests() {
		perOp[req.Operation]++
	}
	t.Logf("requests for 3 builds and a removal: %d, by operation %v", len(e.srv.Requests()), perOp)
}

// TestPreviewCommentOnlyOnceLive checks that no comment exists while the
// preview builds or after a failed first build, that the call saying the
// preview serves creates it, and that a failure after that edits it and
// keeps the link to what is still served.
func TestPreviewCommentOnlyOnceLive(t *testing.T) {
	e := setup(t, githubtest.Options{Token: token}, "")
	e.srv.SetPullRequest(githubtest.PullRequest{Number: 7, Head: shaA})
	r, _ := e.previewReporter(t, PreviewConfig{Deployments: true})
	r.Start()
	r.Building(pr7(shaA))
	r.Failed(pr7(shaA), "build failed")
	r.Building(pr7(shaB))
	e.srv.WaitFor(t, "the status in_progress of the second build", func() bool {
		d := e.srv.Deployments()
		return len(d) == 2 && len(d[1].Statuses) == 1 && len(previewStatuses(e.srv, shaB)) == 1
	})
	if cs := e.srv.Comments(7); len(cs) != 0 {
		t.Fatalf("comments before the preview is live: %+v", cs)
	}
	for _, req := range e.srv.Requests() {
		if req.Operation == "issues/create-comment" || req.Operation == "issues/update-comment" {
			t.Errorf("%s %s before the preview is live", req.Method, req.Path)
		}
	}
	r.Live(pr7(shaB))
	e.srv.WaitFor(t, "the comment", func() bool { return len(e.srv.Comments(7)) == 1 })
	if body := e.srv.Comments(7)[0].Body; !strings.Contains(body, previewURL) || !strings.Contains(body, shortSHA(shaB)) {
		t.Errorf("comment = %q, want the link and the commit", body)
	}
	r.Building(pr7(shaC))
	r.Failed(pr7(shaC), "build failed: hugo exited 1")
	flushPreviews(t, r)
	cs := e.srv.Comments(7)
	if len(cs) != 1 || cs[0].Edits != 1 {
		t.Fatalf("comments = %+v, want the one, edited once", cs)
	}
	for _, want := range []string{previewURL + " serves commit `" + shortSHA(shaB) + "`", "`" + shortSHA(shaC) + "` failed: build failed: hugo exited 1"} {
		if !strings.Contains(cs[0].Body, want) {
			t.Errorf("comment = %q, want it to hold %q", cs[0].Body, want)
		}
	}
}

// TestPreviewOneCommentAcrossRestarts checks that a reporter started
// afresh (a restart: nothing in memory) finds its comment among others,
// however many pages there are, and edits it instead of making a second;
// that an identical body is not sent again; and that a comment deleted on
// GitHub is made anew.
func TestPreviewOneCommentAcrossRestarts(t *testing.T) {
	e := setup(t, githubtest.Options{Token: token}, "")
	e.client.perPage = 10
	e.srv.SetPullRequest(githubtest.PullRequest{Number: 7, Head: shaA})
	for range 25 {
		e.srv.AddComment(7, "reviewer", "quoting "+commentMarker+" is not enough")
	}
	heads := []string{shaA, shaB, shaC, shaD, shaE}
	for i, head := range heads {
		r, _ := e.previewReporter(t, PreviewConfig{})
		r.Start()
		r.Building(pr7(head))
		r.Live(pr7(head))
		if i == 0 {
			for range 10 {
				e.srv.AddComment(7, "reviewer", "later")
			}
		}
		flushPreviews(t, r)
	}
	got := ours(e.srv, 7)
	if len(got) != 1 || got[0].Edits != len(heads)-1 || !strings.Contains(got[0].Body, shortSHA(shaE)) {
		t.Fatalf("our comments = %+v, want one, edited %d times, naming the last commit", got, len(heads)-1)
	}
	lists := 0
	for _, req := range e.srv.Requests() {
		if req.Operation == "issues/list-comments" {
			lists++
		}
	}
	if lists < 4*3 {
		t.Errorf("%d list-comments requests, want every page read after each restart (3 pages each)", lists)
	}

	// Same commit again after a restart: the body is already right.
	before := len(e.srv.Requests())
	r, _ := e.previewReporter(t, PreviewConfig{})
	r.Start()
	r.Live(pr7(shaE))
	flushPreviews(t, r)
	for _, req := range e.srv.Requests()[before:] {
		if req.Operation == "issues/update-comment" || req.Operation == "issues/create-comment" {
			t.Errorf("%s although the comment already says it", req.Operation)
		}
	}

	// Someone deletes it; the next push makes one again, and only one.
	e.srv.RemoveComment(got[0].ID)
	r, _ = e.previewReporter(t, PreviewConfig{})
	r.Start()
	r.Live(pr7(shaA))
	r.Live(pr7(shaB))
	flushPreviews(t, r)
	if got := ours(e.srv, 7); len(got) != 1 || !strings.Contains(got[0].Body, shortSHA(shaB)) {
		t.Errorf("our comments after a deletion = %+v, want one naming the last commit", got)
	}
}

// TestPreviewCommentCreateNotRepeated checks that a comment GitHub created
// although its answer was lost (502) is found, not posted twice, and that a
// deleted comment (edit answered 404) is replaced by a new one.
func TestPreviewCommentCreateNotRepeated(t *testing.T) {
	e := setup(t, githubtest.Options{Token: token}, "")
	e.srv.SetPullRequest(githubtest.PullRequest{Number: 7, Head: shaA})
	e.srv.FailNext(1, githubtest.Fault{Status: http.StatusBadGateway, Message: "Bad Gateway", Operation: "issues/create-comment", Applied: true})
	r, clock := e.previewReporter(t, PreviewConfig{})
	r.Start()
	r.Live(pr7(shaA))
	r.Live(pr7(shaB))
	flushPreviews(t, r)
	got := ours(e.srv, 7)
	if len(got) != 1 || !strings.Contains(got[0].Body, shortSHA(shaB)) {
		t.Fatalf("our comments = %+v, want one, naming the last commit", got)
	}
	if w := clock.Waits(); len(w) != 1 || w[0] != time.Second {
		t.Errorf("waits = %v, want one backoff of 1s before looking again", w)
	}
	if n := e.counts.get(PathIssueComments, ResultRetry); n != 1 {
		t.Errorf("counts = %s, want one retry of the comment", e.counts)
	}
}

// TestPreviewRefusals checks what GitHub shows of a pull request that gets
// no preview: the commit status "preview" on its head says why ("limit", a
// fork waiting for its label, forks off), with no deployment and no
// comment; and a later build of the same commit replaces that status.
func TestPreviewRefusals(t *testing.T) {
	e := setup(t, githubtest.Options{Token: token}, "")
	for _, n := range []int{7, 8, 9} {
		e.srv.SetPullRequest(githubtest.PullRequest{Number: n, Head: shaA})
	}
	r, _ := e.previewReporter(t, PreviewConfig{Deployments: true})
	r.Start()
	r.OverLimit(pr7(shaA), 10)
	r.ForkNotApproved(Preview{Number: 8, Head: shaB}, "preview")
	r.ForkNotApproved(Preview{Number: 9, Head: shaC}, "")
	flushPreviews(t, r)
	posts := e.srv.StatusPosts()
	want := []struct{ sha, state, says string }{
		{shaA, "error", "limit"},
		{shaB, "pending", `label "preview"`},
		{shaC, "success", "forks are not previewed"},
	}
	if len(posts) != len(want) {
		t.Fatalf("status posts = %+v, want %d", posts, len(want))
	}
	for i, w := range want {
		p := posts[i]
		if p.SHA != w.sha || p.Context != "preview" || p.State != w.state || !strings.Contains(p.Description, w.says) || len(p.Description) > 140 {
			t.Errorf("status %d = %+v, want %s on %s saying %q", i, p, w.state, w.sha[:4], w.says)
		}
	}
	if d := e.srv.Deployments(); len(d) != 0 {
		t.Errorf("deployments for refused previews: %+v", d)
	}
	for _, n := range []int{7, 8, 9} {
		if c := e.srv.Comments(n); len(c) != 0 {
			t.Errorf("comments on refused pull request %d: %+v", n, c)
		}
	}

	r, _ = e.previewReporter(t, PreviewConfig{Deployments: true})
	r.Start()
	r.Building(pr7(shaA))
	r.Live(pr7(shaA))
	flushPreviews(t, r)
	status, err := e.client.commitStatuses(context.Background(), shaA)
	if err != nil || len(status) != 1 || status[0].conclusion != "success" {
		t.Errorf("combined status of %s = %+v %v, want the preview's success replacing the limit", shaA[:4], status, err)
	}
}

// TestPreviewRetries checks that a rate limit delays the report by the
// wait GitHub names, and that nothing is lost or doubled.
func TestPreviewRetries(t *testing.T) {
	e := setup(t, githubtest.Options{Token: token}, "")
	e.srv.SetPullRequest(githubtest.PullRequest{Number: 7, Head: shaA})
	e.srv.FailNext(1, githubtest.TooManyRequests(7))
	e.srv.FailNext(1, githubtest.ServerError)
	r, clock := e.previewReporter(t, PreviewConfig{Deployments: true})
	r.Start()
	r.Building(pr7(shaA))
	r.Live(pr7(shaA))
	flushPreviews(t, r)
	if w := clock.Waits(); len(w) != 2 || w[0] != 7*time.Second || w[1] != 2*time.Second {
		t.Errorf("waits = %v, want Retry-After's 7s then the second attempt's backoff of 2s", w)
	}
	d := e.srv.Deployments()
	if len(d) != 1 || !reflect.DeepEqual(statesOf(d[0]), []string{"in_progress", "success"}) {
		t.Errorf("deployments = %+v, want one with in_progress, success", d)
	}
	if len(ours(e.srv, 7)) != 1 {
		t.Errorf("comments = %+v, want one", e.srv.Comments(7))
	}
}

// TestPreviewDenied checks that an endpoint refused for want of permission
// is logged with the permission to grant and not called again, while the
// others go on.
func TestPreviewDenied(t *testing.T) {
	e := setup(t, githubtest.Options{Token: token}, "")
	e.srv.SetPullRequest(githubtest.PullRequest{Number: 7, Head: shaA})
	e.srv.Deny("repos/create-commit-status")
	r, _ := e.previewReporter(t, PreviewConfig{})
	r.Start()
	for _, h := range []string{shaA, shaB, shaC} {
		r.Building(pr7(h))
		r.Live(pr7(h))
	}
	flushPreviews(t, r)
	n := 0
	for _, req := range e.srv.Requests() {
		if req.Operation == "repos/create-commit-status" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d create-commit-status requests, want 1 (then no more)", n)
	}
	if !strings.Contains(logText(e.logs), "Commit statuses: read and write") {
		t.Errorf("logs do not name the permission:\n%s", logText(e.logs))
	}
	if got := ours(e.srv, 7); len(got) != 1 || !strings.Contains(got[0].Body, shortSHA(shaC)) {
		t.Errorf("comments = %+v, want one naming the last commit", got)
	}
}

// TestOpenPullRequests checks the reconcile's list: every page, only open
// pull requests against the base, forks flagged; an error, never a
// partial list, when a page fails.
func TestOpenPullRequests(t *testing.T) {
	e := setup(t, githubtest.Options{Token: token}, "")
	e.client.perPage = 5
	want := map[int]PullRequest{}
	for n := 1; n <= 12; n++ {
		pr := githubtest.PullRequest{Number: n, Head: shaA}
		switch {
		case n == 3:
			pr.HeadRepo = "someone/site"
		case n == 4:
			pr.Base = "dev"
		case n == 5:
			pr.State = "closed"
		case n == 6:
			pr.Draft = true
		}
		e.srv.SetPullRequest(pr)
		if n != 4 && n != 5 {
			headRepo := "octo-org/site"
			if n == 3 {
				headRepo = "someone/site"
			}
			want[n] = PullRequest{Number: n, Head: shaA, HeadRepository: headRepo, Fork: n == 3, Draft: n == 6}
		}
	}
	got, err := e.client.OpenPullRequests(context.Background(), "main")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d pull requests, want %d: %+v", len(got), len(want), got)
	}
	for _, pr := range got {
		if pr != want[pr.Number] {
			t.Errorf("pull request %d = %+v, want %+v", pr.Number, pr, want[pr.Number])
		}
	}
	if n := e.counts.get(PathPulls, ResultOK); n != 2 {
		t.Errorf("%d pages read, want 2 (10 open against main, 5 a page)", n)
	}

	e.srv.FailNext(1, githubtest.Fault{Status: 500, Message: "Server Error", Operation: "pulls/list"})
	if got, err := e.client.OpenPullRequests(context.Background(), "main"); err == nil || got != nil {
		t.Errorf("with a failed page: %v, %v; want an error and no list", got, err)
	}
}

// TestOpenPullRequestsLinkElsewhere checks that a Link header naming
// another origin (an answer tampered with, or a proxy's) neither sends the
// token there nor takes pages from there: go-github keeps only the page
// number, and the client's transport gives the token to api_url's origin
// alone.
func TestOpenPullRequestsLinkElsewhere(t *testing.T) {
	srv := githubtest.Start(t, githubtest.Options{Token: token})
	for n := 1; n <= 7; n++ {
		srv.SetPullRequest(githubtest.PullRequest{Number: n, Head: shaA})
	}
	var elsewhere atomic.Int32
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		if r.Header.Get("Authorization") != "" {
			t.Errorf("the token was sent to another origin: %s", r.URL)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`[]`))
	}))
	defer evil.Close()
	target, _ := url.Parse(srv.URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(resp *http.Response) error {
		if l := resp.Header.Get("Link"); l != "" {
			resp.Header.Set("Link", strings.ReplaceAll(l, target.Host, strings.TrimPrefix(evil.URL, "http://")))
		}
		return nil
	}
	front := httptest.NewServer(proxy)
	defer front.Close()
	c, err := New(Config{APIURL: front.URL, Token: token, Owner: srv.Owner(), Repo: srv.Repo()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	c.perPage = 3
	got, err := c.OpenPullRequests(context.Background(), "main")
	if err != nil || len(got) != 7 {
		t.Fatalf("OpenPullRequests = %d pull requests, %v; want 7", len(got), err)
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("%d requests went to the origin the Link header named", n)
	}
}

func TestPreviewEnvironment(t *testing.T) {
	if got := PreviewEnvironment(42); got != "pr-42" {
		t.Errorf("PreviewEnvironment(42) = %q", got)
	}
}

// TestPreviewBounds checks the reporter's bounds: a full queue drops its
// oldest report, Close before Start drops the rest, and a comment that
// cannot be written within MaxAttempts is given up, counted, and the
// reports after it still go out.
func TestPreviewBounds(t *testing.T) {
	e := setup(t, githubtest.Options{Token: token}, "")
	e.srv.SetPullRequest(githubtest.PullRequest{Number: 7, Head: shaA})
	e.srv.SetPullRequest(githubtest.PullRequest{Number: 8, Head: shaB})
	r, _ := e.previewReporter(t, PreviewConfig{QueueSize: 2})
	for range 5 {
		r.Building(pr7(shaA))
	}
	if n := e.counts.total(ResultDropped); n != 3 {
		t.Errorf("%d dropped with a queue of 2 and 5 reports, want 3", n)
	}
	flushPreviews(t, r)
	if n := e.counts.total(ResultDropped); n != 5 || len(e.srv.Requests()) != 0 {
		t.Errorf("%d dropped and %d requests after Close before Start, want 5 and 0", n, len(e.srv.Requests()))
	}

	for range 3 {
		e.srv.FailNext(1, githubtest.Fault{Status: 500, Message: "Server Error", Operation: "issues/create-comment"})
	}
	r, _ = e.previewReporter(t, PreviewConfig{MaxAttempts: 2})
	r.Start()
	r.Live(pr7(shaA))
	r.Live(Preview{Number: 8, Head: shaB, URL: "https://pr-8.preview.blog.example.com"})
	flushPreviews(t, r)
	if c := e.srv.Comments(7); len(c) != 0 {
		t.Errorf("comments on 7 = %+v, want none (every create failed)", c)
	}
	if n := e.counts.get(PathIssueComments, ResultDropped); n != 1 {
		t.Errorf("counts = %s, want the comment of 7 dropped once", e.counts)
	}
	if c := ours(e.srv, 8); len(c) != 1 {
		t.Errorf("comments on 8 = %+v, want one: the reports after a dropped one go out", c)
	}
}

// TestPreviewTokenNeverLeaks checks the preview reporter's errors and log
// lines when GitHub's message echoes the token.
func TestPreviewTokenNeverLeaks(t *testing.T) {
	e := setup(t, githubtest.Options{Token: token}, "")
	e.srv.SetPullRequest(githubtest.PullRequest{Number: 7, Head: shaA})
	for _, op := range []string{"repos/create-commit-status", "issues/list-comments", "pulls/list"} {
		e.srv.FailNext(1, githubtest.Fault{Status: http.StatusUnprocessableEntity, Message: "token " + token + " is not valid here", Operation: op})
	}
	r, _ := e.previewReporter(t, PreviewConfig{})
	r.Start()
	r.Live(pr7(shaA))
	flushPreviews(t, r)
	_, err := e.client.OpenPullRequests(context.Background(), "main")
	if err == nil || strings.Contains(err.Error(), token) || !strings.Contains(err.Error(), "[REDACTED]") {
		t.Errorf("OpenPullRequests = %v, want GitHub's message with the token redacted", err)
	}
	logs := logText(e.logs)
	if strings.Contains(logs, token) {
		t.Errorf("logs show the token:\n%s", logs)
	}
	if !strings.Contains(logs, "[REDACTED]") {
		t.Errorf("no log line with GitHub's message, so this test proves nothing:\n%s", logs)
	}
}
