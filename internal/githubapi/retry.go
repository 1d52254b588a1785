package githubapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/google/go-github/v74/github"
)

// secondaryWait is how long GitHub asks clients to wait after a secondary
// rate limit that names no time ("wait at least one minute").
const secondaryWait = time.Minute

// resetSlack is added to X-RateLimit-Reset, a time in whole seconds.
const resetSlack = time.Second

// retryDelay reports whether a request that failed with resp (nil when no
// answer came) and err may be tried again, after how long, and whether that
// wait came from GitHub's headers (a rate limit every request must respect)
// rather than from the exponential backoff of attempt (1 for the first).
//
//   - no answer (network error, timeout): backoff;
//   - 429: Retry-After, else X-RateLimit-Reset, else one minute;
//   - 403 with Retry-After, or X-RateLimit-Remaining 0 and X-RateLimit-Reset,
//     or a secondary rate limit: that wait (one minute when none is named);
//     any other 403 (a token without the permission) is final;
//   - 5xx: Retry-After, else backoff;
//   - anything else is final.
func retryDelay(resp *http.Response, err error, attempt int, now time.Time, base, maxBackoff time.Duration) (wait time.Duration, retry, fromHeaders bool) {
	backoff := base << min(attempt-1, 30)
	if backoff <= 0 || backoff > maxBackoff {
		backoff = maxBackoff
	}
	if resp == nil {
		return backoff, true, false
	}
	hw, ok := headerWait(resp.Header, now)
	switch code := resp.StatusCode; {
	case code == http.StatusTooManyRequests:
		if ok {
			return hw, true, true
		}
		return secondaryWait, true, true
	case code == http.StatusForbidden:
		if ok {
			return hw, true, true
		}
		var abuse *github.AbuseRateLimitError
		if errors.As(err, &abuse) {
			return secondaryWait, true, true
		}
		return 0, false, false
	case code >= 500:
		if ok && resp.Header.Get("Retry-After") != "" {
			return hw, true, true
		}
		return backoff, true, false
	}
	return 0, false, false
}

// headerWait reads the wait GitHub asks for: Retry-After (seconds or an HTTP
// date), or, when X-RateLimit-Remaining is 0, until X-RateLimit-Reset.
func headerWait(h http.Header, now time.Time) (time.Duration, bool) {
	if v := h.Get("Retry-After"); v != "" {
		if secs, err := strconv.ParseInt(v, 10, 64); err == nil && secs >= 0 {
			return time.Duration(secs) * time.Second, true
		}
		if t, err := http.ParseTime(v); err == nil {
			return max(t.Sub(now), 0), true
		}
	}
	if h.Get("X-RateLimit-Remaining") == "0" {
		if secs, err := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64); err == nil {
			return max(time.Unix(secs, 0).Sub(now), 0) + resetSlack, true
		}
	}
	return 0, false
}

// sleepCtx waits for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
