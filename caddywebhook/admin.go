package caddywebhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI adds endpoints to Caddy's admin API (localhost-only by default)
// to see and steer the deploys of every github_webhook target:
//
//	GET  /github_webhook/deploys   every target: live release, running deploy, last result, releases
//	POST /github_webhook/deploy    {"path": "/srv/blog"}: deploy now, as a delivery would
//	POST /github_webhook/rollback  {"path": "/srv/blog", "release": "..."}: switch current to a kept release
//	GET  /github_webhook/logs?path=/srv/blog[&release=...][&follow=1]: a build log, streamed
//	DELETE /github_webhook/previews {"path": "/srv/blog", "number": 7}: remove a pull request's preview
//
// A target is named by its path as configured. Errors are JSON objects with
// an "error" field: 404 for an unknown path or release, 409 when there is no
// older release to roll back to, 400 for a malformed request.
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.github_webhook",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Routes returns the admin routes of github_webhook.
func (a AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/github_webhook/deploys", Handler: caddy.AdminHandlerFunc(a.deploys)},
		{Pattern: "/github_webhook/deploy", Handler: caddy.AdminHandlerFunc(a.deploy)},
		{Pattern: "/github_webhook/rollback", Handler: caddy.AdminHandlerFunc(a.rollback)},
		{Pattern: "/github_webhook/logs", Handler: caddy.AdminHandlerFunc(a.logs)},
		{Pattern: "/github_webhook/previews", Handler: caddy.AdminHandlerFunc(a.previews)},
	}
}

// maxAdminBody bounds the JSON of a deploy or rollback request.
const maxAdminBody = 64 << 10

// deploys answers the status of every target, sorted by path.
func (AdminAPI) deploys(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return methodNotAllowed(w, http.MethodGet)
	}
	list := []deployer.Status{}
	for _, t := range allTargets() {
		list = append(list, t.d.Status())
	}
	slices.SortFunc(list, func(a, b deployer.Status) int { return strings.Compare(a.Path, b.Path) })
	return writeJSON(w, http.StatusOK, list)
}

// deployRequest is the body of POST /github_webhook/deploy and /rollback.
type deployRequest struct {
	Path    string `json:"path"`
	Release string `json:"release,omitempty"`
}

// deploy wakes one target, as a delivery would: it retries a tip whose
// build failed, and deploys again after a rollback.
func (AdminAPI) deploy(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return methodNotAllowed(w, http.MethodPost)
	}
	req, t, err := readTargetRequest(r)
	if err != nil {
		return err
	}
	t.d.Wake(deployer.ReasonManual)
	return writeJSON(w, http.StatusAccepted, map[string]string{"status": "queued", "path": req.Path})
}

// rollback switches one target's current to a kept release.
func (AdminAPI) rollback(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return methodNotAllowed(w, http.MethodPost)
	}
	req, t, err := readTargetRequest(r)
	if err != nil {
		return err
	}
	live, err := t.d.Rollback(r.Context(), req.Release)
	switch {
	case errors.Is(err, deployer.ErrUnknownRelease):
		return apiError(http.StatusNotFound, err)
	case errors.Is(err, deployer.ErrNoOlderRelease), errors.Is(err, deployer.ErrRollbackRaced):
		return apiError(http.StatusConflict, err)
	case err != nil:
		return apiError(http.StatusInternalServerError, err)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"live": live})
}

// readTargetRequest decodes the JSON body and finds its target.
func readTargetRequest(r *http.Request) (deployRequest, *target, error) {
	var req deployRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, maxAdminBody+1))
	if err != nil {
		return req, nil, apiError(http.StatusBadRequest, fmt.Errorf("reading the request: %w", err))
	}
	if len(body) > maxAdminBody {
		return req, nil, apiError(http.StatusRequestEntityTooLarge, errors.New("request body too large"))
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, nil, apiError(http.StatusBadRequest, fmt.Errorf("decoding the request: %w", err))
	}
	if req.Path == "" {
		return req, nil, apiError(http.StatusBadRequest, errors.New(`"path" is required`))
	}
	t := findTarget(req.Path)
	if t == nil {
		return req, nil, apiError(http.StatusNotFound, fmt.Errorf("no github_webhook target has path %q", req.Path))
	}
	return req, t, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func methodNotAllowed(w http.ResponseWriter, allow string) error {
	w.Header().Set("Allow", allow)
	return apiError(http.StatusMethodNotAllowed, fmt.Errorf("method not allowed; use %s", allow))
}

func apiError(status int, err error) error {
	return caddy.APIError{HTTPStatus: status, Err: err, Message: err.Error()}
}

// Interface guards
var (
	_ caddy.Module      = (*AdminAPI)(nil)
	_ caddy.AdminRouter = (*AdminAPI)(nil)
)
