package forgetest

import (
	"net/http"
	"strings"
	"testing"
)

// TestServerRefuses: each stand-in refuses what its forge's description
// does not allow (a property the body schema does not list, a state not in
// its enum, a path no operation has), answers 404 without a credential and
// 401 with a wrong one for a private repository, and 201 to a valid
// request with the right one.
func TestServerRefuses(t *testing.T) {
	const sha = "1111111111111111111111111111111111111111"
	for _, tt := range []struct {
		kind, path, good, badProp, badEnum string
		auth                               func(*http.Request, string)
	}{
		{Gitea, "/repos/octo-org/site/statuses/" + sha,
			`{"state":"success","context":"CI"}`, `{"state":"success","contxt":"CI"}`, `{"state":"passed","context":"CI"}`,
			func(r *http.Request, tok string) { r.Header.Set("Authorization", "token "+tok) }},
		{GitLab, "/projects/octo-org%2Fsite/statuses/" + sha,
			`{"state":"running","name":"CI"}`, `{"state":"running","nmae":"CI"}`, `{"state":"pending ","name":"CI"}`,
			func(r *http.Request, tok string) { r.Header.Set("PRIVATE-TOKEN", tok) }},
		{Bitbucket, "/repositories/octo-org/site/commit/" + sha + "/statuses/build",
			`{"key":"CI","state":"SUCCESSFUL","url":"https://ci.example"}`, `{"key":"CI","state":"SUCCESSFUL","url":"https://ci.example","colour":"green"}`,
			`{"key":"CI","state":"success","url":"https://ci.example"}`,
			func(r *http.Request, tok string) { r.Header.Set("Authorization", "Bearer "+tok) }},
	} {
		t.Run(tt.kind, func(t *testing.T) {
			srv := Start(t, Options{Kind: tt.kind, Token: "right"})
			post := func(path, body, tok string) int {
				t.Helper()
				req, _ := http.NewRequest(http.MethodPost, srv.URL()+path, strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				if tok != "" {
					tt.auth(req, tok)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			for _, bad := range []struct{ path, body string }{
				{tt.path, tt.badProp}, {tt.path, tt.badEnum}, {tt.path + "/extra", tt.good},
			} {
				post(bad.path, bad.body, "right")
				if v := srv.TakeViolations(); len(v) == 0 {
					t.Errorf("POST %s %s: no violation", bad.path, bad.body)
				}
			}
			if code := post(tt.path, tt.good, ""); code != http.StatusNotFound {
				t.Errorf("no credential: %d, want 404", code)
			}
			if code := post(tt.path, tt.good, "wrong"); code != http.StatusUnauthorized {
				t.Errorf("a wrong credential: %d, want 401", code)
			}
			if code := post(tt.path, tt.good, "right"); code != http.StatusCreated || len(srv.Created()) != 1 {
				t.Errorf("a valid request: %d, %d created; want 201, 1", code, len(srv.Created()))
			}
		})
	}
}
