package apiretry

import (
	"net/http"
	"testing"
	"time"
)

// TestDelay: which failed requests are tried again, and after how long:
// backoff for no answer and 5xx, the wait the headers name for rate limits,
// a minute for a rate limit that names none; a 403 for want of permission
// and other 4xx are final.
func TestDelay(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	resp := func(code int, kv ...string) *http.Response {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return &http.Response{StatusCode: code, Header: h}
	}
	tests := []struct {
		name    string
		resp    *http.Response
		limited bool
		attempt int
		wait    time.Duration
		retry   bool
	}{
		{"network error", nil, false, 1, time.Second, true},
		{"network error, third attempt", nil, false, 3, 4 * time.Second, true},
		{"backoff capped", nil, false, 40, time.Minute, true},
		{"500", resp(500), false, 2, 2 * time.Second, true},
		{"503 Retry-After", resp(503, "Retry-After", "12"), false, 1, 12 * time.Second, true},
		{"429 Retry-After", resp(429, "Retry-After", "3"), false, 1, 3 * time.Second, true},
		{"429 Retry-After date", resp(429, "Retry-After", now.Add(20*time.Second).UTC().Format(http.TimeFormat)), false, 1, 20 * time.Second, true},
		{"429 bare", resp(429), false, 1, time.Minute, true},
		{"403 rate limit reset", resp(403, "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "1800000300"), false, 1, 301 * time.Second, true},
		{"403 reset already past", resp(403, "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "1799999000"), false, 1, time.Second, true},
		{"403 remaining not 0 is no rate limit", resp(403, "X-RateLimit-Remaining", "10", "X-RateLimit-Reset", "1800000300"), false, 1, 0, false},
		{"403 secondary limit without headers", resp(403), true, 1, time.Minute, true},
		{"403 permission", resp(403), false, 1, 0, false},
		{"404", resp(404), false, 1, 0, false},
		{"422", resp(422), false, 1, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wait, retry, _ := Delay(tt.resp, tt.limited, tt.attempt, now, time.Second, time.Minute)
			if wait != tt.wait || retry != tt.retry {
				t.Errorf("Delay = %v, %v; want %v, %v", wait, retry, tt.wait, tt.retry)
			}
		})
	}
}
