package githubapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/apiretry"
)

// headerWait is apiretry.HeaderWait.
func headerWait(h http.Header, now time.Time) (time.Duration, bool) {
	return apiretry.HeaderWait(h, now)
}

// sleepCtx is apiretry.Sleep.
func sleepCtx(ctx context.Context, d time.Duration) error { return apiretry.Sleep(ctx, d) }

// errDropped is apiretry.ErrDropped.
var errDropped = apiretry.ErrDropped

// retryDelay is apiretry.Delay for an error of Client.do: a rate limit that
// GitHub named in its answer's body (its secondary limit) counts as one.
func retryDelay(resp *http.Response, err error, attempt int, now time.Time, base, maxBackoff time.Duration) (wait time.Duration, retry, fromHeaders bool) {
	var ae *APIError
	return apiretry.Delay(resp, errors.As(err, &ae) && ae.limited, attempt, now, base, maxBackoff)
}
