package githubtest

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestModelPulls walks the operations of previews with valid requests: the
// server checks each answer against its response schema (a mismatch fails
// the test at cleanup), and the model keeps what they did.
func TestModelPulls(t *testing.T) {
	s := Start(t, Options{Token: "tok"})
	auth := map[string]string{"Authorization": "Bearer tok"}
	s.SetPullRequest(PullRequest{Number: 7, Head: sha})
	s.SetPullRequest(PullRequest{Number: 8, Head: sha, HeadRepo: "someone/site"})
	s.SetPullRequest(PullRequest{Number: 9, Head: sha, Base: "dev"})
	s.SetPullRequest(PullRequest{Number: 6, Head: sha})
	s.ClosePullRequest(6)

	var got []float64
	for page, wantNext := range []bool{true, false} {
		path := "/repos/octo-org/site/pulls?base=main&per_page=1&page=" + jsonNum(float64(page+1))
		status, h, list := sendList(t, s, path, auth)
		if status != 200 || strings.Contains(h.Get("Link"), `rel="next"`) != wantNext {
			t.Fatalf("GET %s: %d, Link %q", path, status, h.Get("Link"))
		}
		for _, p := range list {
			got = append(got, p["number"].(float64))
			if p["number"].(float64) == 8 && p["head"].(map[string]any)["repo"].(map[string]any)["fork"] != true {
				t.Errorf("pull 8 from someone/site: head.repo.fork = %v, want true", p["head"])
			}
		}
	}
	if len(got) != 2 || got[0] != 8 || got[1] != 7 {
		t.Errorf("open pulls against main = %v, want [8 7]", got)
	}
	if status, _, p := send(t, s, "GET", "/repos/octo-org/site/pulls/7", "", auth); status != 200 || p["head"].(map[string]any)["sha"] != sha {
		t.Errorf("get pull 7: %d %v", status, p)
	}

	other := s.AddComment(7, "reviewer", "looks good")
	status, _, c := send(t, s, "POST", "/repos/octo-org/site/issues/7/comments", `{"body":"<!-- m --> first"}`, auth)
	if status != 201 {
		t.Fatalf("create comment: %d %v", status, c)
	}
	id := jsonNum(c["id"].(float64))
	if status, _, _ := send(t, s, "PATCH", "/repos/octo-org/site/issues/comments/"+id, `{"body":"<!-- m --> second"}`, auth); status != 200 {
		t.Errorf("update comment: %d", status)
	}
	if status, _, _ := send(t, s, "POST", "/repos/octo-org/site/issues/404/comments", `{"body":"x"}`, auth); status != 404 {
		t.Errorf("comment on no pull request: %d, want 404", status)
	}
	if _, _, list := sendList(t, s, "/repos/octo-org/site/issues/7/comments", auth); len(list) != 2 {
		t.Errorf("comments listed = %v, want 2", list)
	}
	cs := s.Comments(7)
	if len(cs) != 2 || cs[0].ID != other || cs[1].User != Login || cs[1].Body != "<!-- m --> second" || cs[1].Edits != 1 {
		t.Errorf("comments = %+v", cs)
	}
	if status, _, _ := send(t, s, "DELETE", "/repos/octo-org/site/issues/comments/"+id, "", auth); status != 204 || len(s.Comments(7)) != 1 {
		t.Errorf("delete comment: %d, %d left", status, len(s.Comments(7)))
	}

	for _, st := range []string{`{"state":"pending","context":"preview","description":"building"}`, `{"state":"success","context":"preview","target_url":"https://pr-7.example.com","description":"ready"}`} {
		if status, _, _ := send(t, s, "POST", "/repos/octo-org/site/statuses/"+sha, st, auth); status != 201 {
			t.Errorf("create status: %d", status)
		}
	}
	if p := s.StatusPosts(); len(p) != 2 || p[1].State != "success" || p[1].TargetURL != "https://pr-7.example.com" {
		t.Errorf("status posts = %+v", p)
	}
	if _, _, comb := send(t, s, "GET", "/repos/octo-org/site/commits/"+sha+"/status", "", auth); comb["state"] != "success" || comb["total_count"].(float64) != 1 {
		t.Errorf("combined status = %v, want the latest of the one context", comb)
	}

	dep := `{"ref":"` + sha + `","environment":"pr-7","transient_environment":true,"production_environment":false,"auto_merge":false,"required_contexts":[]}`
	_, _, d1 := send(t, s, "POST", "/repos/octo-org/site/deployments", dep, auth)
	_, _, d2 := send(t, s, "POST", "/repos/octo-org/site/deployments", dep, auth)
	id1, id2 := jsonNum(d1["id"].(float64)), jsonNum(d2["id"].(float64))
	if status, _, d := send(t, s, "GET", "/repos/octo-org/site/deployments/"+id1, "", auth); status != 200 || d["transient_environment"] != true || d["production_environment"] != false {
		t.Errorf("get deployment: %d %v", status, d)
	}
	if status, _, _ := send(t, s, "DELETE", "/repos/octo-org/site/deployments/"+id1, "", auth); status != 422 {
		t.Errorf("delete an active deployment with another in its environment: %d, want 422", status)
	}
	send(t, s, "POST", "/repos/octo-org/site/deployments/"+id1+"/statuses", `{"state":"inactive"}`, auth)
	if status, _, _ := send(t, s, "DELETE", "/repos/octo-org/site/deployments/"+id1, "", auth); status != 204 {
		t.Errorf("delete an inactive deployment: %d, want 204", status)
	}
	if status, _, _ := send(t, s, "DELETE", "/repos/octo-org/site/environments/pr-7", "", auth); status != 204 {
		t.Errorf("delete environment: %d", status)
	}
	if status, _, _ := send(t, s, "GET", "/repos/octo-org/site/deployments/"+id2, "", auth); status != 404 || len(s.Deployments()) != 0 {
		t.Errorf("deployment of a deleted environment: %d, %d left", status, len(s.Deployments()))
	}
	if v := s.Violations(); len(v) > 0 {
		t.Errorf("violations: %q", v)
	}
}

// sendList GETs path and decodes an array answer.
func sendList(t *testing.T, s *Server, path string, hdr map[string]string) (int, http.Header, []map[string]any) {
	t.Helper()
	req, err := http.NewRequest("GET", s.URL()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", MediaType)
	req.Header.Set("X-GitHub-Api-Version", APIVersion)
	req.Header.Set("User-Agent", "githubtest")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list []map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, resp.Header, list
}
