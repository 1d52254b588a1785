package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// TestCommandLinePreviews runs "caddy github-webhook previews" and
// "previews rm" against a running Caddy (found through --config) that
// serves a real preview: a signed pull_request delivery builds
// refs/pull/7/head, served at its host by the second site block; the
// list shows it (number, host, head, live), --json equals the admin API's
// previews; rm removes it: the host answers 404, the list no longer holds
// it, and removing it again, or a number that never had one, exits 2.
func TestCommandLinePreviews(t *testing.T) {
	s := newSite(t, "site")
	r := newRemote(t, "html")
	first := r.Commit("first", nil)
	host := "pr-7.preview.test"
	caddyfile := s.caddyfile(r.Bare, "blog", "previews pr-{number}.preview.test") + fmt.Sprintf(`
http://*.preview.test:%d {
	root * %s/previews/{host}/current
	file_server
}
`, s.port, s.path)
	p := startCaddy(t, s, caddyfile, home(t))
	s.waitLive(t, first)
	cliEnv := home(t)
	conf := "--config=" + p.Config

	head := r.PullRequest(7, "a change to review", map[string]string{"index.html": "pull request 7"})
	body, err := testkit.PullRequestPayload(testkit.PullRequestEvent{Repo: "octocat/blog", Base: "main", Number: 7, Action: "opened", Head: head})
	if err != nil {
		t.Fatal(err)
	}
	if code, answer := deliver(t, s.hook(), secret, "pull_request", "pr-7-opened", body); code != http.StatusAccepted {
		t.Fatalf("opened: %d %s", code, answer)
	}
	waitUntil(t, time.Minute, "preview 7 live", func() error {
		for _, q := range s.status(t).Previews {
			if q.Number == 7 && q.State == deployer.PreviewLive && q.Live == head {
				return nil
			}
		}
		return fmt.Errorf("previews %+v", s.status(t).Previews)
	})
	if code, got := previewGet(t, s, host); code != http.StatusOK || got != "pull request 7" {
		t.Fatalf("the preview answers %d %q", code, got)
	}

	cli(t, cliEnv, "previews", conf, s.path).expect(t, 0, "NUMBER", "#7", host, head[:12], deployer.PreviewLive)
	res := cli(t, cliEnv, "previews", "--json", conf, s.path)
	res.expect(t, 0)
	var fromCLI, fromAPI any
	if err := json.Unmarshal([]byte(res.stdout), &fromCLI); err != nil {
		t.Fatalf("previews --json printed %q: %v", res.stdout, err)
	}
	_, api, err := get("http://" + s.admin + "/github_webhook/deploys")
	if err != nil {
		t.Fatal(err)
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(api), &list); err != nil || len(list) != 1 {
		t.Fatalf("the admin API's deploys: %v\n%s", err, api)
	}
	fromAPI = list[0]["previews"]
	if !reflect.DeepEqual(fromCLI, fromAPI) {
		t.Errorf("previews --json differs from the admin API's previews:\n%s\n%v", res.stdout, fromAPI)
	}
	if l, _ := fromCLI.([]any); len(l) != 1 {
		t.Errorf("previews --json lists %d previews, want 1: %s", len(l), res.stdout)
	}

	cli(t, cliEnv, "previews", "rm", conf, s.path, "8").expect(t, 2, "no preview of pull request 8")
	cli(t, cliEnv, "previews", "rm", conf, s.path, "7").expect(t, 0, "removed the preview of #7")
	if code, _ := previewGet(t, s, host); code != http.StatusNotFound {
		t.Errorf("after previews rm, the preview's host answers %d, want 404", code)
	}
	res = cli(t, cliEnv, "previews", conf, s.path)
	res.expect(t, 0, "has no previews")
	if strings.Contains(res.stdout, host) {
		t.Errorf("after previews rm, the list still holds %s:\n%s", host, res.stdout)
	}
	cli(t, cliEnv, "previews", "--json", conf, s.path).expect(t, 0, "[]")
	cli(t, cliEnv, "previews", "rm", conf, s.path, "7").expect(t, 2, "no preview of pull request 7")
	if got := get200(t, s.url("/index.html")); got == "pull request 7" {
		t.Errorf("the site serves the pull request's bytes")
	}
}

// previewGet fetches / of host's preview from s's Caddy, and returns the
// status and body.
func previewGet(t *testing.T, s *site, host string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.url("/index.html"), nil)
	req.Host = host
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

// get200 fetches url and returns its body, failing the test unless it
// answers 200.
func get200(t *testing.T, url string) string {
	t.Helper()
	code, body, err := get(url)
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, code, err)
	}
	return body
}
