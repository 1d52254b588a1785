package caddywebhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

func init() {
	caddy.RegisterModule(eventRecorder{})
}

// eventRecorder is an events handler that tests subscribe through the
// Caddyfile's own `events { on <event> github_webhook_test_recorder }`, as a
// user subscribes a notification handler.
type eventRecorder struct{}

type recordedEvent struct {
	name string
	data map[string]any
}

var recorded struct {
	mu     sync.Mutex
	events []recordedEvent
}

func (eventRecorder) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "events.handlers.github_webhook_test_recorder",
		New: func() caddy.Module { return new(eventRecorder) },
	}
}

func (eventRecorder) Handle(_ context.Context, e caddy.Event) error {
	recorded.mu.Lock()
	defer recorded.mu.Unlock()
	recorded.events = append(recorded.events, recordedEvent{name: e.Name(), data: e.Data})
	return nil
}

func (*eventRecorder) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	return nil
}

// recordedWith returns the recorded events named name for commit.
func recordedWith(name, commit string) []recordedEvent {
	recorded.mu.Lock()
	defer recorded.mu.Unlock()
	var list []recordedEvent
	for _, e := range recorded.events {
		if e.name == name && e.data["commit"] == commit {
			list = append(list, e)
		}
	}
	return list
}

// adminDo sends a request to Caddy's admin API and decodes the JSON answer
// into out (if not nil).
func adminDo(t *testing.T, method, path, body string, out any) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+adminAddr+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decoding %s: %v", method, path, b, err)
		}
	}
	return resp.StatusCode, string(b)
}

// metric returns the value of the series of /metrics that matches re, or "".
func metric(t *testing.T, re string) string {
	t.Helper()
	_, body := adminDo(t, http.MethodGet, "/metrics", "", nil)
	m := regexp.MustCompile(`(?m)^` + re + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return m[1]
}

// TestOperations drives one target through Caddy's own interfaces: the admin
// API's status, manual deploy and rollback (and their errors), the metrics
// on /metrics, and deploy events received by a subscriber.
func TestOperations(t *testing.T) {
	s := newTestSite(t)
	c1 := s.repo.commit(map[string]string{"index.html": "v1"})
	config := strings.Replace(s.caddyfile(`poll 200ms
		command sh -c "if test -e broken; then echo the build broke on purpose >&2; exit 1; fi"`),
		"grace_period 1s", `grace_period 1s
	events {
		on github_webhook.deploy_started github_webhook_test_recorder
		on github_webhook.deploy_succeeded github_webhook_test_recorder
		on github_webhook.deploy_failed github_webhook_test_recorder
	}`, 1)
	s.start(config)
	s.waitLive(c1)
	waitFor(t, "the first deploy to end", func() bool { return s.status().Running == nil }, func() string { return "" })
	p := regexp.QuoteMeta(s.path)

	t.Run("status", func(t *testing.T) {
		var list []deployer.Status
		if code, body := adminDo(t, http.MethodGet, "/github_webhook/deploys", "", &list); code != 200 {
			t.Fatalf("GET deploys: %d %s", code, body)
		}
		if len(list) != 1 {
			t.Fatalf("%d targets, want 1: %+v", len(list), list)
		}
		st := list[0]
		if st.Path != s.path || st.Repo != testRepo || st.Branch != testBranch || st.Remote != s.repo.remote {
			t.Errorf("target = %+v", st)
		}
		if st.Live == nil || st.Live.Commit != c1 || st.Live.Release == "" || st.Live.At.IsZero() {
			t.Errorf("live = %+v", st.Live)
		}
		if (st.Running != nil && st.Running.Reason != deployer.ReasonPoll) || st.Last == nil || st.Last.Result != "ok" || st.Last.Reason != deployer.ReasonStartup {
			t.Errorf("running = %+v, last = %+v", st.Running, st.Last)
		}
		if _, err := os.Stat(st.Last.Log); err != nil || filepath.Dir(st.Last.Log) != filepath.Join(s.path, "releases") {
			t.Errorf("build log %q: %v", st.Last.Log, err)
		}
		if len(st.Releases) != 1 || st.Releases[0] != st.Live.Release {
			t.Errorf("releases = %v", st.Releases)
		}
		// "running" is always present, null when idle.
		_, body := adminDo(t, http.MethodGet, "/github_webhook/deploys", "", nil)
		if !strings.Contains(body, `"running": `) {
			t.Errorf("no running field in %s", body)
		}
	})

	t.Run("events", func(t *testing.T) {
		if n := len(recordedWith(EventDeployStarted, c1)); n != 1 {
			t.Errorf("%d deploy_started events for %s", n, c1)
		}
		ok := recordedWith(EventDeploySucceeded, c1)
		if len(ok) != 1 || ok[0].data["path"] != s.path || ok[0].data["release"] != s.status().Live.Release {
			t.Errorf("deploy_succeeded events: %+v", ok)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		if v := metric(t, `caddy_github_webhook_deploys_total\{path="`+p+`",result="ok"\}`); v != "1" {
			t.Errorf("deploys_total ok = %q, want 1", v)
		}
		if v := metric(t, `caddy_github_webhook_live_info\{commit="`+c1+`",path="`+p+`",release="[^"]+"\}`); v != "1" {
			t.Errorf("live_info for %s = %q", c1, v)
		}
		if v := metric(t, `caddy_github_webhook_deploy_duration_seconds_count\{path="`+p+`"\}`); v != "1" {
			t.Errorf("deploy_duration_seconds_count = %q", v)
		}
		if v := metric(t, `caddy_github_webhook_last_success_timestamp_seconds\{path="`+p+`"\}`); v == "" || v == "0" {
			t.Errorf("last_success_timestamp_seconds = %q", v)
		}
		// Deliveries: one genuine push, and one forged.
		c := pushCase()
		c.body = fixture(t, "push-branch.json")
		if code, _, body := send(t, c); code != 202 {
			t.Fatalf("push: %d %s", code, body)
		}
		c.signWith = "forged"
		send(t, c)
		if v := metric(t, `caddy_github_webhook_deliveries_total\{event="push",path="`+p+`",result="queued"\}`); v != "1" {
			t.Errorf("deliveries_total push queued = %q", v)
		}
		if v := metric(t, `caddy_github_webhook_deliveries_total\{event="unverified",path="`+p+`",result="error"\}`); v != "1" {
			t.Errorf("deliveries_total unverified error = %q", v)
		}
		// The push found the tip live: that is not a deploy.
		waitFor(t, "the push's wake to find the tip live", func() bool {
			b, _ := os.ReadFile(s.log)
			return regexp.MustCompile(`"msg":"tip is live".*"reason":"delivery"`).Match(b)
		}, func() string { return "" })
		if v := metric(t, `caddy_github_webhook_deploys_total\{path="`+p+`",result="ok"\}`); v != "1" {
			t.Errorf("deploys_total ok = %q after a wake with the tip live, want 1", v)
		}
	})

	c2 := s.repo.commit(map[string]string{"index.html": "v2"})
	t.Run("manual deploy", func(t *testing.T) {
		var answer map[string]string
		code, body := adminDo(t, http.MethodPost, "/github_webhook/deploy", `{"path": "`+s.path+`"}`, &answer)
		if code != http.StatusAccepted || answer["status"] != "queued" {
			t.Fatalf("POST deploy: %d %s", code, body)
		}
		s.waitLive(c2)
		if get(t, siteURL+"/index.html") != "v2" {
			t.Error("v2 not served")
		}
		// A poll may have deployed c2 first; wait until the manual wake is
		// handled too, so that it cannot come after the rollback below.
		waitFor(t, "the manual wake to be handled", func() bool {
			if st := s.status(); st.Last.Reason == deployer.ReasonManual && st.Running == nil {
				return true
			}
			b, _ := os.ReadFile(s.log)
			return regexp.MustCompile(`"msg":"tip is live".*"reason":"manual"`).Match(b)
		}, func() string { return fmt.Sprintf("%+v", s.status().Last) })
	})

	t.Run("rollback", func(t *testing.T) {
		var answer struct{ Live deployer.Live }
		code, body := adminDo(t, http.MethodPost, "/github_webhook/rollback", `{"path": "`+s.path+`"}`, &answer)
		if code != 200 || answer.Live.Commit != c1 {
			t.Fatalf("POST rollback: %d %s", code, body)
		}
		link, _ := os.Readlink(filepath.Join(s.path, "current"))
		if link != filepath.Join("releases", answer.Live.Release) {
			t.Errorf("current -> %s, want release %s", link, answer.Live.Release)
		}
		if got := get(t, siteURL+"/index.html"); got != "v1" {
			t.Errorf("after rollback the site serves %q", got)
		}
		if v := metric(t, `caddy_github_webhook_live_info\{commit="`+c1+`",path="`+p+`",release="`+answer.Live.Release+`"\}`); v != "1" {
			t.Errorf("live_info after rollback to %s = %q", c1, v)
		}
		if v := metric(t, `caddy_github_webhook_live_info\{commit="`+c2+`",path="`+p+`",release="[^"]+"\}`); v != "" {
			t.Errorf("live_info still shows %s after the rollback", c2)
		}
		// Polls (every 200ms) do not undo it: they log that they leave it.
		waitFor(t, "a poll to decline the rolled-back-from commit", func() bool {
			b, _ := os.ReadFile(s.log)
			return strings.Contains(string(b), "rolled back from")
		}, func() string { return fmt.Sprintf("c1=%s c2=%s status=%+v", c1, c2, s.status()) })
		if st := s.status(); st.Live.Commit != c1 {
			t.Fatalf("poll undid the rollback: live %s", st.Live.Commit)
		}

		// Errors.
		for _, tc := range []struct {
			body string
			code int
		}{
			{`{"path": "/no/such/site"}`, 404},
			{`{"path": "` + s.path + `", "release": "20000101T000000Z-000000000000"}`, 404},
			{`{"path": "` + s.path + `"}`, 409}, // v1 is the oldest kept release
			{`{"path": `, 400},
			{`{"path": "` + s.path + `", "unknown": 1}`, 400},
		} {
			code, body := adminDo(t, http.MethodPost, "/github_webhook/rollback", tc.body, nil)
			var e struct{ Error string }
			if code != tc.code || json.Unmarshal([]byte(body), &e) != nil || e.Error == "" {
				t.Errorf("rollback %s: %d %s, want %d with a JSON error", tc.body, code, body, tc.code)
			}
		}
		if code, body := adminDo(t, http.MethodGet, "/github_webhook/deploy", "", nil); code != 405 {
			t.Errorf("GET deploy: %d %s", code, body)
		}
		if code, body := adminDo(t, http.MethodPost, "/github_webhook/deploy", `{"path": "/no/such/site"}`, nil); code != 404 {
			t.Errorf("deploy of an unknown path: %d %s", code, body)
		}
	})

	t.Run("new commit after rollback", func(t *testing.T) {
		c3 := s.repo.commit(map[string]string{"index.html": "v3"})
		s.waitLive(c3) // by poll, without a delivery
		if got := get(t, siteURL+"/index.html"); got != "v3" {
			t.Errorf("serves %q", got)
		}
	})

	t.Run("failed deploy", func(t *testing.T) {
		bad := s.repo.commit(map[string]string{"broken": "yes"})
		var st deployer.Status
		waitFor(t, "the failed deploy", func() bool {
			st = s.status()
			return st.Last != nil && st.Last.Commit == bad && st.Last.Result == "error"
		}, func() string { return fmt.Sprintf("%+v", st.Last) })
		if !strings.Contains(st.Last.OutputTail, "the build broke on purpose") {
			t.Errorf("output tail = %q", st.Last.OutputTail)
		}
		failed := recordedWith(EventDeployFailed, bad)
		if len(failed) != 1 || !strings.Contains(fmt.Sprint(failed[0].data["error"]), "exit status 1") {
			t.Errorf("deploy_failed events: %+v", failed)
		}
		if v := metric(t, `caddy_github_webhook_deploys_total\{path="`+p+`",result="error"\}`); v != "1" {
			t.Errorf("deploys_total error = %q", v)
		}
		if got := get(t, siteURL+"/index.html"); got != "v3" {
			t.Errorf("a failed build changed the site: %q", got)
		}
	})

	t.Run("restart", func(t *testing.T) {
		// A new deployer on the folder (the configuration removed, then
		// loaded again) learns the live release from disk, and the new
		// configuration's metrics show it before any deploy.
		live := s.status().Live
		if err := loadConfig(emptyConfig); err != nil {
			t.Fatal(err)
		}
		if err := loadConfig(config); err != nil {
			t.Fatal(err)
		}
		re := `caddy_github_webhook_live_info\{commit="` + live.Commit + `",path="` + p + `",release="` + live.Release + `"\}`
		waitFor(t, "live_info after the restart", func() bool { return metric(t, re) == "1" },
			func() string { return metric(t, `caddy_github_webhook_live_info\{[^}]*\}`) })
		if v := metric(t, `caddy_github_webhook_last_success_timestamp_seconds\{path="`+p+`"\}`); v == "" || v == "0" {
			t.Errorf("last_success_timestamp_seconds after the restart = %q", v)
		}
	})
}

// TestValidateStartsNothing: Caddy provisions a configuration it only
// validates (`caddy validate`, the admin API's checks). That must neither
// take the folder of a running deployer nor start one: deployers start with
// the github_webhook app, which only a running configuration starts.
func TestValidateStartsNothing(t *testing.T) {
	s := newTestSite(t)
	c1 := s.repo.commit(map[string]string{"index.html": "v1"})
	config := s.caddyfile("")
	s.start(config)
	s.waitLive(c1)

	validate := func(caddyfileText string) error {
		adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfileText), nil)
		if err != nil {
			return err
		}
		var cfg caddy.Config
		if err := json.Unmarshal(adapted, &cfg); err != nil {
			return err
		}
		return caddy.Validate(&cfg)
	}
	// The running configuration itself validates: its folder is not taken.
	other := fmt.Sprintf("localhost:%d", testkit.Ports(t, 1)[0])
	if err := validate(strings.Replace(config, adminAddr, other, 1)); err != nil {
		t.Errorf("validating the running configuration: %v", err)
	}
	// A configuration for a new folder: nothing is created.
	fresh := filepath.Join(t.TempDir(), "fresh")
	if err := validate(strings.Replace(strings.ReplaceAll(config, s.path, fresh), adminAddr, other, 1)); err != nil {
		t.Errorf("validating a configuration for a new folder: %v", err)
	}
	if _, err := os.Lstat(fresh); err == nil {
		t.Errorf("validate created %s", fresh)
	}
	if st := s.status(); st.Live == nil || st.Live.Commit != c1 {
		t.Errorf("the running deployer was disturbed: %+v", st)
	}
}
