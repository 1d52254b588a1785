package githubapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/google/go-github/v74/github"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/apiretry"
)

// retryDelay is apiretry.Delay, with GitHub's secondary rate limit (a 403
// whose headers name no time) recognised from go-github's error.
func retryDelay(resp *http.Response, err error, attempt int, now time.Time, base, maxBackoff time.Duration) (wait time.Duration, retry, fromHeaders bool) {
	var abuse *github.AbuseRateLimitError
	return apiretry.Delay(resp, errors.As(err, &abuse), attempt, now, base, maxBackoff)
}

// headerWait is apiretry.HeaderWait.
func headerWait(h http.Header, now time.Time) (time.Duration, bool) {
	return apiretry.HeaderWait(h, now)
}

// sleepCtx is apiretry.Sleep.
func sleepCtx(ctx context.Context, d time.Duration) error { return apiretry.Sleep(ctx, d) }
