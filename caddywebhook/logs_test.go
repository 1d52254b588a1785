package caddywebhook

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestAdminLogs: GET /github_webhook/logs answers the last deploy's build
// log as plain text, naming its release, or a named release's; and 400,
// 404 and 405 for what it cannot answer. (Following a running build is in
// e2e's TestCommandLine, through the command line.)
func TestAdminLogs(t *testing.T) {
	s := newTestSite(t)
	s.startLive(s.caddyfile(`command sh -c "echo output of the build for $DEPLOY_COMMIT"`))
	st := s.status()
	q := "/github_webhook/logs?path=" + url.QueryEscape(s.path)

	req, _ := http.NewRequest(http.MethodGet, "http://"+adminAddr+q, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get(HeaderRelease) != st.Live.Release || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("headers %v, want release %s", resp.Header, st.Live.Release)
	}
	for _, tc := range []struct {
		method, uri string
		code        int
		want        string
	}{
		{http.MethodGet, q, 200, "output of the build for " + st.Live.Commit},
		{http.MethodGet, q + "&release=" + st.Live.Release, 200, "output of the build for " + st.Live.Commit},
		{http.MethodGet, q + "&follow=1", 200, "output of the build for " + st.Live.Commit},
		{http.MethodGet, q + "&release=20200101T000000Z-000000000000", 404, "no build log of release"},
		{http.MethodGet, q + "&release=..%2Fstate.json", 404, "is not a release name"},
		{http.MethodGet, "/github_webhook/logs?path=/no/such/site", 404, `no github_webhook target has path \"/no/such/site\"`},
		{http.MethodGet, "/github_webhook/logs", 400, `parameter \"path\" is required`},
		{http.MethodPost, q, 405, "use GET"},
	} {
		code, body := adminDo(t, tc.method, tc.uri, "", nil)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s %s: %d %s, want %d with %q", tc.method, tc.uri, code, body, tc.code, tc.want)
		}
	}
}
