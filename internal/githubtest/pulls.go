package githubtest

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Login is the user the server's token belongs to: the author of the
// comments and commit statuses created through the API.
const Login = "site-bot"

// PullRequest is a pull request a test sets on the repository.
type PullRequest struct {
	Number int
	// Head is the commit at the pull request's head; HeadRef its branch
	// ("pr-<number>" when empty); HeadRepo the full name of the repository
	// the branch lives in (the server's own when empty: not a fork).
	Head, HeadRef, HeadRepo string
	// Base is the branch it would merge into ("main" when empty).
	Base string
	// State is "open" (when empty) or "closed".
	State string
	Draft bool
	Title string
}

// Comment is a comment on a pull request, as the server holds it.
type Comment struct {
	ID     int64
	Number int    // the pull request's number
	User   string // its author's login
	Body   string
	// Edits is how many times it was updated through the API.
	Edits int
}

// StatusPost is a commit status created through the API, in the order
// received.
type StatusPost struct {
	SHA, State, Context, Description, TargetURL string
}

// SetPullRequest adds pr, or replaces the pull request of that number.
func (s *Server) SetPullRequest(pr PullRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if pr.State == "" {
		pr.State = "open"
	}
	if pr.Base == "" {
		pr.Base = "main"
	}
	if pr.HeadRef == "" {
		pr.HeadRef = "pr-" + strconv.Itoa(pr.Number)
	}
	if pr.HeadRepo == "" {
		pr.HeadRepo = s.opts.Owner + "/" + s.opts.Repo
	}
	if pr.Title == "" {
		pr.Title = "Change " + strconv.Itoa(pr.Number)
	}
	p := pr
	s.pulls[pr.Number] = &p
}

// ClosePullRequest closes pull request number.
func (s *Server) ClosePullRequest(number int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.pulls[number]; p != nil {
		p.State = "closed"
	}
}

// AddComment adds a comment by user (someone other than the token's
// user, as a test sets it) to pull request number and returns its ID.
func (s *Server) AddComment(number int, user, body string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &Comment{ID: s.newID(), Number: number, User: user, Body: body}
	s.comments = append(s.comments, c)
	return c.ID
}

// Comments returns the comments on pull request number, oldest first.
func (s *Server) Comments(number int) []Comment {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Comment
	for _, c := range s.comments {
		if c.Number == number {
			out = append(out, *c)
		}
	}
	return out
}

// StatusPosts returns the commit statuses created through the API, in the
// order received.
func (s *Server) StatusPosts() []StatusPost {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]StatusPost(nil), s.statusPosts...)
}

// DeletedEnvironments returns the environments deleted through the API.
func (s *Server) DeletedEnvironments() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.deletedEnvs...)
}

func userJSON(login string) map[string]any {
	id := 7000 + len(login)
	u := "https://api.github.example/users/" + login
	return map[string]any{
		"login": login, "id": id, "node_id": fmt.Sprintf("U_%d", id), "type": "User", "site_admin": false,
		"avatar_url": "https://avatars.github.example/u/" + strconv.Itoa(id), "gravatar_id": "",
		"url": u, "html_url": "https://github.example/" + login,
		"followers_url": u + "/followers", "following_url": u + "/following{/other_user}",
		"gists_url": u + "/gists{/gist_id}", "starred_url": u + "/starred{/owner}{/repo}",
		"subscriptions_url": u + "/subscriptions", "organizations_url": u + "/orgs",
		"repos_url": u + "/repos", "events_url": u + "/events{/privacy}", "received_events_url": u + "/received_events",
	}
}

func (s *Server) pullJSON(op *operation, status int, p *PullRequest) map[string]any {
	self := s.opts.Owner + "/" + s.opts.Repo
	repoJSON := func(full string) map[string]any {
		owner, name, _ := strings.Cut(full, "/")
		return map[string]any{"full_name": full, "name": name, "owner": userJSON(owner), "fork": !strings.EqualFold(full, self)}
	}
	headOwner, _, _ := strings.Cut(p.HeadRepo, "/")
	var closedAt any
	if p.State == "closed" {
		closedAt = stamp(epoch)
	}
	pu := fmt.Sprintf("%s/pulls/%d", s.repoURL(), p.Number)
	return shape(responseSchema(op, status, ""), map[string]any{
		"id": 300000 + p.Number, "node_id": fmt.Sprintf("PR_%d", p.Number), "number": p.Number,
		"state": p.State, "title": p.Title, "draft": p.Draft, "locked": false, "body": nil,
		"user": userJSON(headOwner), "labels": []any{}, "closed_at": closedAt, "merged_at": nil,
		"url": pu, "html_url": fmt.Sprintf("https://github.example/%s/pull/%d", self, p.Number),
		"created_at": stamp(epoch), "updated_at": stamp(epoch),
		"head": map[string]any{"sha": p.Head, "ref": p.HeadRef, "label": headOwner + ":" + p.HeadRef, "repo": repoJSON(p.HeadRepo), "user": userJSON(headOwner)},
		"base": map[string]any{"sha": strings.Repeat("0", 40), "ref": p.Base, "label": s.opts.Owner + ":" + p.Base, "repo": repoJSON(self), "user": userJSON(s.opts.Owner)},
	})
}

// listPulls answers GET /pulls: state (default open), base and head
// filters, newest first as GitHub sorts by default.
func (s *Server) listPulls(r *http.Request, op *operation) answer {
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" {
		state = "open"
	}
	nums := make([]int, 0, len(s.pulls))
	for n := range s.pulls {
		nums = append(nums, n)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(nums)))
	if q.Get("direction") == "asc" {
		sort.Ints(nums)
	}
	var sel []*PullRequest
	for _, n := range nums {
		p := s.pulls[n]
		headOwner, _, _ := strings.Cut(p.HeadRepo, "/")
		if (state != "all" && p.State != state) || (q.Has("base") && q.Get("base") != p.Base) ||
			(q.Has("head") && q.Get("head") != headOwner+":"+p.HeadRef) {
			continue
		}
		sel = append(sel, p)
	}
	lo, hi, h := paginate(r, len(sel))
	items := []any{}
	for _, p := range sel[lo:hi] {
		items = append(items, s.pullJSON(op, http.StatusOK, p))
	}
	return answer{status: http.StatusOK, body: items, header: h}
}

func (s *Server) getPull(op *operation, rec *Request) answer {
	n, _ := strconv.Atoi(rec.Params["pull_number"])
	p := s.pulls[n]
	if p == nil {
		return errorAnswer(http.StatusNotFound, "Not Found")
	}
	return answer{status: http.StatusOK, body: s.pullJSON(op, http.StatusOK, p)}
}

func (s *Server) commentJSON(op *operation, status int, c *Comment) map[string]any {
	return shape(responseSchema(op, status, ""), map[string]any{
		"id": c.ID, "node_id": fmt.Sprintf("IC_%d", c.ID), "body": c.Body, "user": userJSON(c.User),
		"url":        fmt.Sprintf("%s/issues/comments/%d", s.repoURL(), c.ID),
		"html_url":   fmt.Sprintf("https://github.example/%s/%s/pull/%d#issuecomment-%d", s.opts.Owner, s.opts.Repo, c.Number, c.ID),
		"issue_url":  fmt.Sprintf("%s/issues/%d", s.repoURL(), c.Number),
		"created_at": stamp(epoch), "updated_at": stamp(epoch.Add(time.Duration(c.Edits) * time.Second)),
		"author_association": "MEMBER",
	})
}

// issue finds the pull request an issue_number names: the model's issues
// are its pull requests.
func (s *Server) issue(rec *Request) *PullRequest {
	n, _ := strconv.Atoi(rec.Params["issue_number"])
	return s.pulls[n]
}

func (s *Server) listComments(r *http.Request, op *operation, rec *Request) answer {
	p := s.issue(rec)
	if p == nil {
		return errorAnswer(http.StatusNotFound, "Not Found")
	}
	var sel []*Comment
	for _, c := range s.comments {
		if c.Number == p.Number {
			sel = append(sel, c)
		}
	}
	lo, hi, h := paginate(r, len(sel))
	items := []any{}
	for _, c := range sel[lo:hi] {
		items = append(items, s.commentJSON(op, http.StatusOK, c))
	}
	return answer{status: http.StatusOK, body: items, header: h}
}

func (s *Server) createComment(op *operation, rec *Request) answer {
	p := s.issue(rec)
	if p == nil {
		return errorAnswer(http.StatusNotFound, "Not Found")
	}
	c := &Comment{ID: s.newID(), Number: p.Number, User: Login, Body: str(rec.Body, "body", "")}
	s.comments = append(s.comments, c)
	return answer{status: http.StatusCreated, body: s.commentJSON(op, http.StatusCreated, c)}
}

func (s *Server) findComment(rec *Request) (int, *Comment) {
	id, _ := strconv.ParseInt(rec.Params["comment_id"], 10, 64)
	for i, c := range s.comments {
		if c.ID == id {
			return i, c
		}
	}
	return -1, nil
}

func (s *Server) updateComment(op *operation, rec *Request) answer {
	_, c := s.findComment(rec)
	if c == nil {
		return errorAnswer(http.StatusNotFound, "Not Found")
	}
	c.Body = str(rec.Body, "body", c.Body)
	c.Edits++
	return answer{status: http.StatusOK, body: s.commentJSON(op, http.StatusOK, c)}
}

func (s *Server) deleteComment(rec *Request) answer {
	i, c := s.findComment(rec)
	if c == nil {
		return errorAnswer(http.StatusNotFound, "Not Found")
	}
	s.comments = append(s.comments[:i:i], s.comments[i+1:]...)
	return answer{status: http.StatusNoContent}
}

// createCommitStatus records the status and makes it the latest of its
// context on the commit (what the combined status then shows).
func (s *Server) createCommitStatus(op *operation, rec *Request) answer {
	sha := rec.Params["sha"]
	if !fullSHA.MatchString(sha) {
		return errorAnswer(http.StatusUnprocessableEntity, "No commit found for SHA: "+sha)
	}
	b := rec.Body
	post := StatusPost{
		SHA: sha, State: str(b, "state", ""), Context: str(b, "context", "default"),
		Description: str(b, "description", ""), TargetURL: str(b, "target_url", ""),
	}
	s.statusPosts = append(s.statusPosts, post)
	st := CommitStatus{Context: post.Context, State: post.State, Description: post.Description}
	replaced := false
	for i, old := range s.statuses[sha] {
		if old.Context == st.Context {
			s.statuses[sha][i], replaced = st, true
		}
	}
	if !replaced {
		s.statuses[sha] = append(s.statuses[sha], st)
	}
	id := s.newID()
	var target any
	if post.TargetURL != "" {
		target = post.TargetURL
	}
	return answer{status: http.StatusCreated, body: shape(responseSchema(op, http.StatusCreated, ""), map[string]any{
		"id": id, "node_id": fmt.Sprintf("SC_%d", id), "state": post.State, "context": post.Context,
		"description": post.Description, "target_url": target, "avatar_url": nil, "creator": userJSON(Login),
		"url": fmt.Sprintf("%s/statuses/%s", s.repoURL(), sha), "created_at": stamp(epoch), "updated_at": stamp(epoch),
	})}
}

func (s *Server) getDeployment(op *operation, rec *Request) answer {
	d := s.findDeployment(rec)
	if d == nil {
		return errorAnswer(http.StatusNotFound, "Not Found")
	}
	return answer{status: http.StatusOK, body: s.deploymentJSON(op, http.StatusOK, "", d)}
}

// deleteDeployment removes a deployment as GitHub does: only an inactive
// one, or the only one of its environment.
func (s *Server) deleteDeployment(rec *Request) answer {
	d := s.findDeployment(rec)
	if d == nil {
		return errorAnswer(http.StatusNotFound, "Not Found")
	}
	others := 0
	for _, o := range s.deployments {
		if o != d && o.Environment == d.Environment {
			others++
		}
	}
	if others > 0 && (len(d.Statuses) == 0 || d.Statuses[len(d.Statuses)-1].State != "inactive") {
		return errorAnswer(http.StatusUnprocessableEntity, "We cannot delete an active deployment unless it is the only deployment in a given environment.")
	}
	for i, o := range s.deployments {
		if o == d {
			s.deployments = append(s.deployments[:i:i], s.deployments[i+1:]...)
			break
		}
	}
	return answer{status: http.StatusNoContent}
}

// deleteEnvironment removes an environment and its deployments.
func (s *Server) deleteEnvironment(rec *Request) answer {
	name := rec.Params["environment_name"]
	kept := s.deployments[:0:0]
	for _, d := range s.deployments {
		if d.Environment != name {
			kept = append(kept, d)
		}
	}
	s.deployments = kept
	s.deletedEnvs = append(s.deletedEnvs, name)
	return answer{status: http.StatusNoContent}
}

// RemoveComment deletes comment id, as someone on GitHub's pages would.
func (s *Server) RemoveComment(id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, c := range s.comments {
		if c.ID == id {
			s.comments = append(s.comments[:i:i], s.comments[i+1:]...)
			return
		}
	}
}
