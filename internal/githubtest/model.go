package githubtest

import (
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

var fullSHA = regexp.MustCompile(`^[0-9a-f]{40}$`)

// epoch is the time every object the model makes was created at.
var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// repoURL is the API URL of the repository.
func (s *Server) repoURL() string {
	return s.URL() + "/repos/" + s.opts.Owner + "/" + s.opts.Repo
}

// shape fills an object of schema sch: the schema's example of every required
// property, overlaid with the model's fields.
func shape(sch *schema, fields map[string]any) map[string]any {
	out, _ := sch.example().(map[string]any)
	if out == nil {
		out = map[string]any{}
	}
	overlay(out, fields)
	return out
}

// responseSchema is the 2xx schema of op, or of its array property prop's items.
func responseSchema(op *operation, status int, prop string) *schema {
	sch := op.responses[status]
	if sch == nil {
		return &schema{MaxLength: -1}
	}
	if sch.Type == "array" && prop == "" {
		return sch.Items
	}
	if p, ok := sch.Properties[prop]; ok && p.Items != nil {
		return p.Items
	}
	return sch
}

// paginate cuts total items into the page the request asks for and sets the
// Link header as GitHub does.
func paginate(r *http.Request, total int) (lo, hi int, h http.Header) {
	q := r.URL.Query()
	per, page := 30, 1
	if v, err := strconv.Atoi(q.Get("per_page")); err == nil && v > 0 {
		per = min(v, 100)
	}
	if v, err := strconv.Atoi(q.Get("page")); err == nil && v > 0 {
		page = v
	}
	lo = min((page-1)*per, total)
	hi = min(lo+per, total)
	last := max(1, (total+per-1)/per)
	link := func(p int, rel string) string {
		u := *r.URL
		u.Scheme, u.Host = "http", r.Host
		v := u.Query()
		v.Set("page", strconv.Itoa(p))
		v.Set("per_page", strconv.Itoa(per))
		u.RawQuery = v.Encode()
		return fmt.Sprintf("<%s>; rel=%q", u.String(), rel)
	}
	var links []string
	if page < last {
		links = append(links, link(page+1, "next"), link(last, "last"))
	}
	if page > 1 {
		links = append(links, link(1, "first"), link(page-1, "prev"))
	}
	h = http.Header{}
	if len(links) > 0 {
		h.Set("Link", strings.Join(links, ", "))
	}
	return lo, hi, h
}

func str(m map[string]any, key, def string) string {
	if v, ok := m[key].(string); ok {
		return v
	}
	return def
}

func (s *Server) createDeployment(op *operation, rec *Request) answer {
	b := rec.Body
	ref := str(b, "ref", "")
	if !fullSHA.MatchString(ref) {
		// The model knows commits only by their full SHA.
		return errorAnswer(http.StatusUnprocessableEntity, "No ref found for: "+ref)
	}
	d := &Deployment{
		ID: s.newID(), Ref: ref, SHA: ref,
		Task:        str(b, "task", "deploy"),
		Environment: str(b, "environment", "production"),
		Description: str(b, "description", ""),
		AutoMerge:   true,
		CreatedAt:   epoch,
	}
	if v, ok := b["auto_merge"].(bool); ok {
		d.AutoMerge = v
	}
	d.Transient, _ = b["transient_environment"].(bool)
	d.Production = d.Environment == "production"
	if v, ok := b["production_environment"].(bool); ok {
		d.Production = v
	}
	if rc, ok := b["required_contexts"].([]any); ok {
		d.RequiredContexts = []string{}
		for _, c := range rc {
			d.RequiredContexts = append(d.RequiredContexts, c.(string))
		}
	} else {
		// GitHub then verifies every status context of the commit first.
		for _, st := range s.statuses[ref] {
			if st.State != "success" {
				return errorAnswer(http.StatusConflict, "Conflict: Commit status checks failed for "+ref+".")
			}
		}
	}
	s.deployments = append(s.deployments, d)
	return answer{status: http.StatusCreated, body: s.deploymentJSON(op, http.StatusCreated, "", d)}
}

func (s *Server) newID() int64 {
	s.nextID++
	return s.nextID
}

func (s *Server) deploymentJSON(op *operation, status int, prop string, d *Deployment) map[string]any {
	u := fmt.Sprintf("%s/deployments/%d", s.repoURL(), d.ID)
	return shape(responseSchema(op, status, prop), map[string]any{
		"url": u, "id": d.ID, "node_id": fmt.Sprintf("DE_%d", d.ID),
		"sha": d.SHA, "ref": d.Ref, "task": d.Task, "payload": map[string]any{},
		"original_environment": d.Environment, "environment": d.Environment,
		"description": d.Description, "created_at": stamp(d.CreatedAt), "updated_at": stamp(d.CreatedAt),
		"statuses_url": u + "/statuses", "repository_url": s.repoURL(),
		"transient_environment": d.Transient, "production_environment": d.Production,
	})
}

func (s *Server) findDeployment(rec *Request) *Deployment {
	id, _ := strconv.ParseInt(rec.Params["deployment_id"], 10, 64)
	for _, d := range s.deployments {
		if d.ID == id {
			return d
		}
	}
	return nil
}

func (s *Server) listDeployments(r *http.Request, op *operation, rec *Request) answer {
	q := r.URL.Query()
	var sel []*Deployment
	for i := len(s.deployments) - 1; i >= 0; i-- { // newest first
		d := s.deployments[i]
		if (q.Has("sha") && q.Get("sha") != d.SHA) || (q.Has("ref") && q.Get("ref") != d.Ref) ||
			(q.Has("task") && q.Get("task") != d.Task) || (q.Has("environment") && q.Get("environment") != d.Environment) {
			continue
		}
		sel = append(sel, d)
	}
	lo, hi, h := paginate(r, len(sel))
	items := []any{}
	for _, d := range sel[lo:hi] {
		items = append(items, s.deploymentJSON(op, http.StatusOK, "", d))
	}
	return answer{status: http.StatusOK, body: items, header: h}
}

func (s *Server) createDeploymentStatus(r *http.Request, op *operation, rec *Request) answer {
	d := s.findDeployment(rec)
	if d == nil {
		return errorAnswer(http.StatusNotFound, "Not Found")
	}
	b := rec.Body
	st := DeploymentStatus{
		ID: s.newID(), State: str(b, "state", ""),
		Description:    str(b, "description", ""),
		EnvironmentURL: str(b, "environment_url", ""),
		LogURL:         str(b, "log_url", str(b, "target_url", "")),
		Environment:    str(b, "environment", d.Environment),
	}
	if n := utf8.RuneCountInString(st.Description); n > 140 {
		s.violations = append(s.violations, fmt.Sprintf("%s %s: description has %d characters; GitHub allows 140", r.Method, r.URL.Path, n))
		return errorAnswer(http.StatusUnprocessableEntity, "Validation Failed")
	}
	d.Statuses = append(d.Statuses, st)
	return answer{status: http.StatusCreated, body: s.statusJSON(op, http.StatusCreated, d, st)}
}

func (s *Server) statusJSON(op *operation, status int, d *Deployment, st DeploymentStatus) map[string]any {
	du := fmt.Sprintf("%s/deployments/%d", s.repoURL(), d.ID)
	return shape(responseSchema(op, status, ""), map[string]any{
		"url": fmt.Sprintf("%s/statuses/%d", du, st.ID), "id": st.ID, "node_id": fmt.Sprintf("DES_%d", st.ID),
		"state": st.State, "description": st.Description, "environment": st.Environment,
		"target_url": st.LogURL, "log_url": st.LogURL, "environment_url": st.EnvironmentURL,
		"created_at": stamp(epoch), "updated_at": stamp(epoch),
		"deployment_url": du, "repository_url": s.repoURL(),
	})
}

func (s *Server) listDeploymentStatuses(r *http.Request, op *operation, rec *Request) answer {
	d := s.findDeployment(rec)
	if d == nil {
		return errorAnswer(http.StatusNotFound, "Not Found")
	}
	lo, hi, h := paginate(r, len(d.Statuses))
	items := []any{}
	for i := len(d.Statuses) - 1 - lo; i >= len(d.Statuses)-hi; i-- { // newest first
		items = append(items, s.statusJSON(op, http.StatusOK, d, d.Statuses[i]))
	}
	return answer{status: http.StatusOK, body: items, header: h}
}

// appJSON is the GitHub App behind a check run.
func appJSON(slug string) map[string]any {
	if slug == "" {
		slug = "github-actions"
	}
	name := slug
	id := 9000 + len(slug)
	if slug == "github-actions" {
		name, id = "GitHub Actions", 15368
	}
	return map[string]any{"id": id, "slug": slug, "name": name, "node_id": "APP_" + slug}
}

func (s *Server) listCheckRuns(r *http.Request, op *operation, rec *Request) answer {
	ref := rec.Params["ref"]
	q := r.URL.Query()
	var sel []int
	for i, c := range s.checkRuns[ref] {
		if (q.Has("check_name") && q.Get("check_name") != c.Name) || (q.Has("status") && q.Get("status") != c.Status) {
			continue
		}
		sel = append(sel, i)
	}
	lo, hi, h := paginate(r, len(sel))
	sch := responseSchema(op, http.StatusOK, "check_runs")
	items := []any{}
	for _, i := range sel[lo:hi] {
		c := s.checkRuns[ref][i]
		id := 500000 + i
		var conclusion, completed any
		if c.Status == "completed" {
			conclusion, completed = c.Conclusion, stamp(epoch)
		}
		items = append(items, shape(sch, map[string]any{
			"id": id, "node_id": fmt.Sprintf("CR_%d", id), "head_sha": ref, "name": c.Name,
			"external_id": "", "url": fmt.Sprintf("%s/check-runs/%d", s.repoURL(), id),
			"html_url":    fmt.Sprintf("https://github.example/%s/%s/runs/%d", s.opts.Owner, s.opts.Repo, id),
			"details_url": fmt.Sprintf("https://github.example/%s/%s/runs/%d", s.opts.Owner, s.opts.Repo, id),
			"status":      c.Status, "conclusion": conclusion, "started_at": stamp(epoch), "completed_at": completed,
			"app": appJSON(c.App), "check_suite": map[string]any{"id": 700000 + len(c.App)},
			"pull_requests": []any{},
		}))
	}
	return answer{status: http.StatusOK, body: map[string]any{"total_count": len(sel), "check_runs": items}, header: h}
}

// listCheckSuites lists the suites set with SetCheckSuites for apps without
// a check run, then makes one suite per app from the commit's check runs.
func (s *Server) listCheckSuites(r *http.Request, op *operation, rec *Request) answer {
	ref := rec.Params["ref"]
	byApp := map[string][]CheckRun{}
	var runApps []string
	for _, c := range s.checkRuns[ref] {
		if c.App == "" {
			c.App = "github-actions"
		}
		if _, ok := byApp[c.App]; !ok {
			runApps = append(runApps, c.App)
		}
		byApp[c.App] = append(byApp[c.App], c)
	}
	var suites []CheckSuite
	for _, cs := range s.checkSuites[ref] {
		if cs.App == "" {
			cs.App = "github-actions"
		}
		if _, ok := byApp[cs.App]; !ok {
			suites = append(suites, cs)
		}
	}
	for _, app := range runApps {
		cs := CheckSuite{App: app, Status: "completed"}
		for _, c := range byApp[app] {
			if c.Status != "completed" {
				cs.Status = c.Status
			} else if cs.Conclusion == "" || c.Conclusion != "success" {
				cs.Conclusion = c.Conclusion
			}
		}
		suites = append(suites, cs)
	}
	lo, hi, h := paginate(r, len(suites))
	sch := responseSchema(op, http.StatusOK, "check_suites")
	items := []any{}
	for i, cs := range suites[lo:hi] {
		var conclusion any
		if cs.Status == "completed" {
			conclusion = cs.Conclusion
		}
		id := 700000 + lo + i
		items = append(items, shape(sch, map[string]any{
			"id": id, "node_id": fmt.Sprintf("CS_%d", id), "head_sha": ref, "head_branch": "main",
			"status": cs.Status, "conclusion": conclusion,
			"app": appJSON(cs.App), "latest_check_runs_count": len(byApp[cs.App]),
			"url": fmt.Sprintf("%s/check-suites/%d", s.repoURL(), id), "check_runs_url": fmt.Sprintf("%s/check-suites/%d/check-runs", s.repoURL(), id),
			"created_at": stamp(epoch), "updated_at": stamp(epoch),
		}))
	}
	return answer{status: http.StatusOK, body: map[string]any{"total_count": len(suites), "check_suites": items}, header: h}
}

func (s *Server) combinedStatus(r *http.Request, op *operation, rec *Request) answer {
	ref := rec.Params["ref"]
	all := s.statuses[ref]
	state := "success"
	if len(all) == 0 {
		state = "pending"
	}
	for _, st := range all {
		switch st.State {
		case "failure", "error":
			state = "failure"
		case "pending":
			if state != "failure" {
				state = "pending"
			}
		}
	}
	lo, hi, h := paginate(r, len(all))
	sch := responseSchema(op, http.StatusOK, "statuses")
	items := []any{}
	for i, st := range all[lo:hi] {
		id := 800000 + lo + i
		items = append(items, shape(sch, map[string]any{
			"id": id, "node_id": fmt.Sprintf("SC_%d", id), "state": st.State, "context": st.Context,
			"description": st.Description, "target_url": nil, "avatar_url": nil,
			"url": fmt.Sprintf("%s/statuses/%s", s.repoURL(), ref), "created_at": stamp(epoch), "updated_at": stamp(epoch),
		}))
	}
	body := shape(op.responses[http.StatusOK], map[string]any{
		"state": state, "sha": ref, "total_count": len(all), "statuses": items,
		"commit_url": s.repoURL() + "/commits/" + ref, "url": s.repoURL() + "/commits/" + ref + "/status",
	})
	return answer{status: http.StatusOK, body: body, header: h}
}

// workflowPath is w's workflow file.
func workflowPath(w WorkflowRun) string {
	if w.Path != "" {
		return w.Path
	}
	return ".github/workflows/" + strings.ToLower(strings.ReplaceAll(w.Name, " ", "-")) + ".yml"
}

func (s *Server) listWorkflowRuns(r *http.Request, op *operation) answer {
	q := r.URL.Query()
	shas := make([]string, 0, len(s.workflowRuns))
	for sha := range s.workflowRuns {
		shas = append(shas, sha)
	}
	sort.Strings(shas)
	type run struct {
		sha string
		i   int
		w   WorkflowRun
	}
	var sel []run
	for _, sha := range shas {
		for i, w := range s.workflowRuns[sha] {
			if w.Event == "" {
				w.Event = "push"
			}
			if (q.Has("head_sha") && q.Get("head_sha") != sha) || (q.Has("status") && q.Get("status") != w.Status) ||
				(q.Has("event") && q.Get("event") != w.Event) || (q.Has("branch") && q.Get("branch") != "main") {
				continue
			}
			sel = append(sel, run{sha, i, w})
		}
	}
	lo, hi, h := paginate(r, len(sel))
	sch := responseSchema(op, http.StatusOK, "workflow_runs")
	items := []any{}
	for _, x := range sel[lo:hi] {
		id := 900000 + 100*sort.SearchStrings(shas, x.sha) + x.i
		wid := 600000 + len(x.w.Name)
		ru := fmt.Sprintf("%s/actions/runs/%d", s.repoURL(), id)
		var conclusion any
		if x.w.Status == "completed" {
			conclusion = x.w.Conclusion
		}
		items = append(items, shape(sch, map[string]any{
			"id": id, "name": x.w.Name, "node_id": fmt.Sprintf("WR_%d", id), "head_branch": "main", "head_sha": x.sha,
			"path":          workflowPath(x.w),
			"display_title": x.w.Name, "run_number": x.i + 1, "event": x.w.Event,
			"status": x.w.Status, "conclusion": conclusion, "workflow_id": wid,
			"url": ru, "html_url": fmt.Sprintf("https://github.example/%s/%s/actions/runs/%d", s.opts.Owner, s.opts.Repo, id),
			"created_at": stamp(epoch), "updated_at": stamp(epoch),
			"jobs_url": ru + "/jobs", "logs_url": ru + "/logs", "check_suite_url": s.repoURL() + "/check-suites/1",
			"cancel_url": ru + "/cancel", "rerun_url": ru + "/rerun", "artifacts_url": ru + "/artifacts",
			"workflow_url": fmt.Sprintf("%s/actions/workflows/%d", s.repoURL(), wid), "pull_requests": []any{},
		}))
	}
	return answer{status: http.StatusOK, body: map[string]any{"total_count": len(sel), "workflow_runs": items}, header: h}
}
