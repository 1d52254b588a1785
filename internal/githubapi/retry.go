package githubapi

import (
	"context"
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
