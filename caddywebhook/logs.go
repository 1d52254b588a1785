package caddywebhook

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
)

// HeaderRelease names, in the answer of GET /github_webhook/logs, the
// release whose build log it is.
const HeaderRelease = "Github-Webhook-Release"

// logs answers GET /github_webhook/logs?path=...[&release=...][&follow=1]:
// the build log of release (default: the running build's, else the last
// deploy's, else the live release's) as plain text, streamed as it is
// read. With follow, the running build's log is sent as the build writes
// it, until the build ends or the client goes away; memory stays at one
// 32 KiB buffer whatever the log's size.
func (AdminAPI) logs(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return methodNotAllowed(w, http.MethodGet)
	}
	q := r.URL.Query()
	path := q.Get("path")
	if path == "" {
		return apiError(http.StatusBadRequest, errors.New(`the query parameter "path" is required`))
	}
	t := findTarget(path)
	if t == nil {
		return apiError(http.StatusNotFound, fmt.Errorf("no github_webhook target has path %q", path))
	}
	follow := q.Get("follow") == "1" || q.Get("follow") == "true"
	release := q.Get("release")
	name, log, err := t.d.BuildLog(r.Context(), release, follow)
	switch {
	case errors.Is(err, deployer.ErrUnknownRelease):
		return apiError(http.StatusNotFound, fmt.Errorf("%q is not a release name", release))
	case errors.Is(err, deployer.ErrNoBuildLog) && release == "":
		return apiError(http.StatusNotFound, fmt.Errorf("%s has no build log yet: nothing was built", path))
	case errors.Is(err, deployer.ErrNoBuildLog):
		return apiError(http.StatusNotFound, fmt.Errorf("%s has no build log of release %q (built elsewhere, or pruned)", path, release))
	case err != nil:
		return apiError(http.StatusInternalServerError, err)
	}
	defer log.Close()

	// The admin server's ReadTimeout (10 s) does not end a follow: once
	// a request without a body is read, Go's server clears the read
	// deadline (e2e's TestCommandLine follows a build for longer).
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set(HeaderRelease, name)
	w.WriteHeader(http.StatusOK)
	buf := make([]byte, 32<<10)
	for {
		n, err := log.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil // the client went away
			}
			rc.Flush()
		}
		if err != nil {
			// io.EOF, or the request's context ended: the answer is
			// complete or nobody reads it. Either way the status is sent.
			return nil
		}
	}
}
