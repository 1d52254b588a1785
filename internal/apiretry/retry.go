// Package apiretry holds what the module's forge API clients share about
// talking to an API that must never delay or fail a deploy: when a failed
// request may be tried again and after how long (Delay), the wait an API
// asks for in its headers (HeaderWait), and a bounded queue of reports sent
// in order by one goroutine, each retried within its bounds (Queue,
// Retrier). It knows nothing of any forge's payloads, of Caddy or of git.
package apiretry

import (
	"context"
	"net/http"
	"strconv"
	"time"
)

// SecondaryWait is how long to wait after a rate limit that names no time
// (GitHub: "wait at least one minute").
const SecondaryWait = time.Minute

// resetSlack is added to X-RateLimit-Reset, a time in whole seconds.
const resetSlack = time.Second

// Delay reports whether a request that got resp (nil when no answer came)
// may be tried again, after how long, and whether that wait came from the
// API's headers (a rate limit every request must respect) rather than from
// the exponential backoff of attempt (1 for the first), which starts at base
// and stops growing at maxBackoff. limited says the caller knows the answer
// is a rate limit although its headers name no time (GitHub's secondary
// rate limit).
//
//   - no answer (network error, timeout): backoff;
//   - 429: Retry-After, else X-RateLimit-Reset, else one minute;
//   - 403 with Retry-After, or X-RateLimit-Remaining 0 and X-RateLimit-Reset,
//     or limited: that wait (one minute when none is named); any other 403
//     (a token without the permission) is final;
//   - 5xx: Retry-After, else backoff;
//   - anything else is final.
func Delay(resp *http.Response, limited bool, attempt int, now time.Time, base, maxBackoff time.Duration) (wait time.Duration, retry, fromHeaders bool) {
	backoff := base << min(attempt-1, 30)
	if backoff <= 0 || backoff > maxBackoff {
		backoff = maxBackoff
	}
	if resp == nil {
		return backoff, true, false
	}
	hw, ok := HeaderWait(resp.Header, now)
	switch code := resp.StatusCode; {
	case code == http.StatusTooManyRequests:
		if ok {
			return hw, true, true
		}
		return SecondaryWait, true, true
	case code == http.StatusForbidden:
		if ok {
			return hw, true, true
		}
		if limited {
			return SecondaryWait, true, true
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

// HeaderWait reads the wait an API asks for: Retry-After (seconds or an
// HTTP date), or, when X-RateLimit-Remaining is 0, until X-RateLimit-Reset
// (Unix seconds; GitHub, Gitea and GitLab send these names).
func HeaderWait(h http.Header, now time.Time) (time.Duration, bool) {
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

// Sleep waits for d or until ctx ends.
func Sleep(ctx context.Context, d time.Duration) error {
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
