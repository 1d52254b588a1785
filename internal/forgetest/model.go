package forgetest

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/githubtest"
)

const stamp = "2025-01-01T00:00:00Z"

// dispatch runs the model; s.mu is held.
func (s *Server) dispatch(r *http.Request, op *githubtest.Operation) answer {
	switch op.ID {
	case "repoCreateStatus", "postProjectsIdStatusesSha", "createBuildStatus":
		return s.createStatus(op)
	case "repoGetCombinedStatusByRef":
		return s.giteaCombined(r, op)
	case "getProjectsIdRepositoryCommitsShaStatuses":
		return s.gitlabStatuses(r, op)
	case "getProjectsIdPipelines":
		return s.gitlabPipelines(r)
	case "listCommitStatuses":
		return s.bitbucketStatuses(r, op)
	}
	return s.errorAnswer(http.StatusNotImplemented, "forgetest: "+op.ID+" not modelled")
}

func str(m map[string]any, key string) string {
	v, _ := m[key].(string)
	return v
}

// createStatus records a status created through the API.
func (s *Server) createStatus(op *githubtest.Operation) answer {
	b := op.Body
	st := Status{State: str(b, "state"), Description: str(b, "description"), TargetURL: str(b, "target_url")}
	switch s.opts.Kind {
	case GitLab:
		st.Commit, st.Name = op.Params["sha"], str(b, "name")
		if st.Name == "" {
			st.Name = str(b, "context")
		}
		if st.Name == "" {
			st.Name = "default"
		}
	case Bitbucket:
		st.Commit, st.Name, st.TargetURL, st.Label = op.Params["commit"], str(b, "key"), str(b, "url"), str(b, "name")
	default:
		st.Commit, st.Name = op.Params["sha"], str(b, "context")
	}
	s.created = append(s.created, st)
	s.nextID++
	return answer{status: http.StatusCreated, body: s.statusJSON(st, s.nextID)}
}

// latest lists the statuses of commit, the latest of each name, those a
// test set first.
func (s *Server) latest(commit string) []Status {
	var out []Status
	index := map[string]int{}
	for _, st := range append(append([]Status(nil), s.statuses[commit]...), s.createdFor(commit)...) {
		if i, ok := index[st.Name]; ok {
			out[i] = st
			continue
		}
		index[st.Name] = len(out)
		out = append(out, st)
	}
	return out
}

func (s *Server) createdFor(commit string) []Status {
	var out []Status
	for _, st := range s.created {
		if st.Commit == commit {
			out = append(out, st)
		}
	}
	return out
}

// statusJSON is a status as the forge's API describes it.
func (s *Server) statusJSON(st Status, id int64) map[string]any {
	switch s.opts.Kind {
	case GitLab:
		return map[string]any{"id": id, "sha": st.Commit, "ref": "main", "status": st.State, "name": st.Name,
			"target_url": nullable(st.TargetURL), "description": nullable(st.Description), "created_at": stamp,
			"started_at": nil, "finished_at": nil, "allow_failure": st.AllowFailure, "coverage": nil,
			"author": map[string]any{"id": 1, "username": "deployer", "name": "Deployer", "state": "active"}}
	case Bitbucket:
		return map[string]any{"type": "build", "uuid": fmt.Sprintf("{%08d-0000-4000-8000-000000000000}", id), "key": st.Name,
			"state": st.State, "url": st.TargetURL, "name": st.Label, "description": st.Description, "refname": nil,
			"created_on": stamp, "updated_on": stamp}
	}
	return map[string]any{"id": id, "status": st.State, "context": st.Name, "description": st.Description,
		"target_url": st.TargetURL, "url": s.ts.URL + "/api/v1/repos/" + s.opts.Repo + "/statuses/" + st.Commit,
		"created_at": stamp, "updated_at": stamp}
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// page cuts total items into the page asked for by the query parameters
// page and sizeParam.
func page(r *http.Request, sizeParam string, def, maxSize, total int) (lo, hi, n, size int) {
	q := r.URL.Query()
	size, n = def, 1
	if v, err := strconv.Atoi(q.Get(sizeParam)); err == nil && v > 0 {
		size = min(v, maxSize)
	}
	if v, err := strconv.Atoi(q.Get("page")); err == nil && v > 0 {
		n = v
	}
	lo = min((n-1)*size, total)
	return lo, min(lo+size, total), n, size
}

// giteaCombined is Gitea's combined status: the latest status per context,
// paged with page and limit, X-Total-Count and Link as Gitea sets them.
func (s *Server) giteaCombined(r *http.Request, op *githubtest.Operation) answer {
	all := s.latest(op.Params["ref"])
	lo, hi, n, size := page(r, "limit", 30, s.opts.MaxPage, len(all))
	statuses := []any{}
	state := "success"
	for i, st := range all[lo:hi] {
		statuses = append(statuses, s.statusJSON(st, int64(lo+i+1)))
	}
	for _, st := range all {
		if st.State != "success" {
			state = st.State
		}
	}
	if len(all) == 0 {
		state = "pending"
	}
	h := http.Header{}
	h.Set("X-Total-Count", strconv.Itoa(len(all)))
	if hi < len(all) {
		u := *r.URL
		u.Scheme, u.Host = "http", r.Host
		q := u.Query()
		q.Set("page", strconv.Itoa(n+1))
		q.Set("limit", strconv.Itoa(size))
		u.RawQuery = q.Encode()
		h.Set("Link", fmt.Sprintf("<%s>; rel=\"next\"", u.String()))
	}
	return answer{status: http.StatusOK, header: h, body: map[string]any{
		"state": state, "sha": op.Params["ref"], "total_count": len(all), "statuses": statuses,
		"commit_url": s.ts.URL + "/api/v1/repos/" + s.opts.Repo + "/commits/" + op.Params["ref"],
		"url":        s.ts.URL + "/api/v1/repos/" + s.opts.Repo + "/commits/" + op.Params["ref"] + "/status",
	}}
}

// gitlabHeaders are GitLab's offset pagination headers.
func gitlabHeaders(n, size, hi, total int) http.Header {
	h := http.Header{}
	h.Set("X-Page", strconv.Itoa(n))
	h.Set("X-Per-Page", strconv.Itoa(size))
	h.Set("X-Total", strconv.Itoa(total))
	h.Set("X-Next-Page", "")
	if hi < total {
		h.Set("X-Next-Page", strconv.Itoa(n+1))
	}
	return h
}

func (s *Server) gitlabStatuses(r *http.Request, op *githubtest.Operation) answer {
	all := s.latest(op.Params["sha"])
	lo, hi, n, size := page(r, "per_page", 20, s.opts.MaxPage, len(all))
	out := []any{}
	for i, st := range all[lo:hi] {
		out = append(out, s.statusJSON(st, int64(lo+i+1)))
	}
	return answer{status: http.StatusOK, header: gitlabHeaders(n, size, hi, len(all)), body: out}
}

// gitlabPipelines lists the pipelines of the commit named by sha: those a
// test set, and the external pipeline GitLab makes for statuses set
// through the API.
func (s *Server) gitlabPipelines(r *http.Request) answer {
	sha := r.URL.Query().Get("sha")
	all := append([]Pipeline(nil), s.pipelines[sha]...)
	if c := s.createdFor(sha); len(c) > 0 {
		all = append(all, Pipeline{ID: 9000, Status: c[len(c)-1].State, Source: "external"})
	}
	lo, hi, n, size := page(r, "per_page", 20, s.opts.MaxPage, len(all))
	out := []any{}
	for _, p := range all[lo:hi] {
		src := p.Source
		if src == "" {
			src = "push"
		}
		out = append(out, map[string]any{"id": p.ID, "iid": p.ID, "project_id": 1, "sha": sha, "ref": "main",
			"status": p.Status, "source": src, "created_at": stamp, "updated_at": stamp,
			"web_url": s.ts.URL + "/" + s.opts.Repo + "/-/pipelines/" + strconv.FormatInt(p.ID, 10)})
	}
	return answer{status: http.StatusOK, header: gitlabHeaders(n, size, hi, len(all)), body: out}
}

func (s *Server) bitbucketStatuses(r *http.Request, op *githubtest.Operation) answer {
	all := s.latest(op.Params["commit"])
	lo, hi, n, size := page(r, "pagelen", 10, s.opts.MaxPage, len(all))
	values := []any{}
	for i, st := range all[lo:hi] {
		values = append(values, s.statusJSON(st, int64(lo+i+1)))
	}
	body := map[string]any{"size": len(all), "page": n, "pagelen": size, "values": values}
	if hi < len(all) {
		q := url.Values{"pagelen": {strconv.Itoa(size)}, "page": {strconv.Itoa(n + 1)}}
		body["next"] = "http://" + r.Host + strings.TrimSuffix(r.URL.Path, "/") + "?" + q.Encode()
	}
	return answer{status: http.StatusOK, body: body}
}
