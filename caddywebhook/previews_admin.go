package caddywebhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
)

// previewRequest is the body of DELETE /github_webhook/previews.
type previewRequest struct {
	Path   string `json:"path"`
	Number int    `json:"number"`
}

// previews removes one preview by hand: 200 once it no longer serves (its
// folder goes in the background), 404 for an unknown path or number.
func (AdminAPI) previews(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodDelete {
		return methodNotAllowed(w, http.MethodDelete)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxAdminBody+1))
	if err != nil {
		return apiError(http.StatusBadRequest, fmt.Errorf("reading the request: %w", err))
	}
	if len(body) > maxAdminBody {
		return apiError(http.StatusRequestEntityTooLarge, errors.New("request body too large"))
	}
	var req previewRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return apiError(http.StatusBadRequest, fmt.Errorf("decoding the request: %w", err))
	}
	if req.Path == "" || req.Number <= 0 {
		return apiError(http.StatusBadRequest, errors.New(`"path" and "number" (a pull request's number) are required`))
	}
	t := findTarget(req.Path)
	if t == nil {
		return apiError(http.StatusNotFound, fmt.Errorf("no github_webhook target has path %q", req.Path))
	}
	if err := t.d.RemovePreview(req.Number); errors.Is(err, deployer.ErrUnknownPreview) {
		return apiError(http.StatusNotFound, fmt.Errorf("target %q has no preview of pull request %d", req.Path, req.Number))
	} else if err != nil {
		return apiError(http.StatusInternalServerError, err)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"removed": req.Number, "path": req.Path})
}
