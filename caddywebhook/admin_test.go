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
	"time"

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
// on /metrics, and deploy events received by a subscriber. Nothing wakes the
// deployer but what the test does (poll is an hour): a poll is a wake with
// the reason poll, which the test gives as the poll's ticker would.
func TestOperations(t *testing.T) {
	s := newTestSite(t)
	c1 := s.repo.Commit("test commit", map[string]string{"index.html": "v1"})
	config := strings.Replace(s.caddyfile(`poll 1h
		command sh -c "if test -e broken; then echo the build broke on purpose >&2; exit 1; fi"`),
		"grace_period 1s", `grace_period 1s
	events {
		on github_webhook.deploy_started github_webhook_test_recorder
		on github_webhook.deploy_succeeded github_webhook_test_recorder
		on github_webhook.deploy_failed github_webhook_test_recorder
	}`, 1)
	s.start(config)
	look := s.waitLook(0, deployer.ReasonStartup, deployer.OutcomeDeployed).Count
	p := regexp.QuoteMeta(s.path)
	poll := func() { deployerOf(s.path).Wake(deployer.ReasonPoll) }

	t.Run("status", func(t *testing.T) {
		var list []deployer.Status
		if code, body := adminDo(t, http.MethodGet, "/github_webhook/deploys", "", &list); code != 200 {
			t.Fatalf("GET deploys: %d %s", code, body)
		}
		if len(list) != 1 {
			t.Fatalf("%d targets, want 1: %+v", len(list), list)
		}
		st := list[0]
		if st.Path != s.path || st.Repo != testRepo || st.Branch != testBranch || st.Remote != s.repo.Bare {
			t.Errorf("target = %+v", st)
		}
		if st.Live == nil || st.Live.Commit != c1 || st.Live.Release == "" || st.Live.At.IsZero() {
			t.Errorf("live = %+v", st.Live)
		}
		if st.Running != nil || st.Last == nil || st.Last.Result != "ok" || st.Last.Reason != deployer.ReasonStartup {
			t.Errorf("running = %+v, last = %+v", st.Running, st.Last)
		}
		if c := st.Checked; c == nil || c.Count != look || c.Commit != c1 || c.Outcome != deployer.OutcomeDeployed {
			t.Errorf("checked = %+v", c)
		}
		if _, err := os.Stat(st.Last.Log); err != nil || filepath.Dir(st.Last.Log) != filepath.Join(s.path, "releases") {
			t.Errorf("build log %q: %v", st.Last.Log, err)
		}
		if len(st.Releases) != 1 || st.Releases[0] != st.Live.Release {
			t.Errorf("releases = %v", st.Releases)
		}
		// "running" is always present, null when idle.
		_, body := adminDo(t, http.MethodGet, "/github_webhook/deploys", "", nil)
		if !strings.Contains(body, `"running": null`) {
			t.Errorf("no running field, null, in %s", body)
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
		look = s.waitLook(look, deployer.ReasonDelivery, deployer.OutcomeLive).Count
		if v := metric(t, `caddy_github_webhook_deploys_total\{path="`+p+`",result="ok"\}`); v != "1" {
			t.Errorf("deploys_total ok = %q after a wake with the tip live, want 1", v)
		}
	})

	c2 := s.repo.Commit("test commit", map[string]string{"index.html": "v2"})
	t.Run("manual deploy", func(t *testing.T) {
		var answer map[string]string
		code, body := adminDo(t, http.MethodPost, "/github_webhook/deploy", `{"path": "`+s.path+`"}`, &answer)
		if code != http.StatusAccepted || answer["status"] != "queued" {
			t.Fatalf("POST deploy: %d %s", code, body)
		}
		look = s.waitLook(look, deployer.ReasonManual, deployer.OutcomeDeployed).Count
		if st := s.status(); st.Live.Commit != c2 || st.Last.Reason != deployer.ReasonManual {
			t.Errorf("after the manual deploy: live %+v, last %+v", st.Live, st.Last)
		}
		if got := get(t, siteURL+"/index.html"); got != "v2" {
			t.Errorf("after the manual deploy the site serves %q", got)
		}
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
		// A poll does not undo it: it leaves the rolled-back-from tip alone.
		poll()
		c := s.waitLook(look, deployer.ReasonPoll, deployer.OutcomeWaiting)
		look = c.Count
		if c.Commit != c2 || c.Detail != "rolled back from" {
			t.Errorf("the poll's look: %+v, want %s left alone as rolled back from", c, c2)
		}
		if got := get(t, siteURL+"/index.html"); got != "v1" {
			t.Errorf("after a poll the rolled-back site serves %q", got)
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
		c3 := s.repo.Commit("test commit", map[string]string{"index.html": "v3"})
		poll() // without a delivery
		look = s.waitLook(look, deployer.ReasonPoll, deployer.OutcomeDeployed).Count
		if got := get(t, siteURL+"/index.html"); got != "v3" || s.status().Live.Commit != c3 {
			t.Errorf("serves %q, live %+v; want v3 of %s", got, s.status().Live, c3)
		}
	})

	t.Run("failed deploy", func(t *testing.T) {
		bad := s.repo.Commit("test commit", map[string]string{"broken": "yes"})
		poll()
		look = s.waitLook(look, deployer.ReasonPoll, deployer.OutcomeFailed).Count
		st := s.status()
		if st.Last == nil || st.Last.Commit != bad || st.Last.Result != "error" ||
			!strings.Contains(st.Last.OutputTail, "the build broke on purpose") {
			t.Errorf("last = %+v, want the failed build of %s with its output", st.Last, bad)
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
		// The next poll leaves the failed tip alone.
		poll()
		if c := s.waitLook(look, deployer.ReasonPoll, deployer.OutcomeWaiting); c.Commit != bad || c.Detail != "failed before" {
			t.Errorf("the next poll's look: %+v, want %s left alone as failed before", c, bad)
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
		testkit.WaitFor(t, time.Minute, "live_info after the restart", func() error {
			if metric(t, re) != "1" {
				return fmt.Errorf("live_info: %s", metric(t, `caddy_github_webhook_live_info\{[^}]*\}`))
			}
			return nil
		})
		if v := metric(t, `caddy_github_webhook_last_success_timestamp_seconds\{path="`+p+`"\}`); v == "" || v == "0" {
			t.Errorf("last_success_timestamp_seconds after the restart = %q", v)
		}
	})
}

// TestPoll: with poll, a commit pushed without any delivery goes live.
func TestPoll(t *testing.T) {
	s := newTestSite(t)
	s.startLive(s.caddyfile("poll 100ms"))
	c2 := s.repo.Commit("test commit", map[string]string{"index.html": "two"})
	testkit.WaitFor(t, time.Minute, "a deploy of the second commit", func() error {
		if last := s.status().Last; last == nil || last.Commit != c2 {
			return fmt.Errorf("last %+v", last)
		}
		return nil
	})
	if last := s.status().Last; last.Result != "ok" || last.Reason != deployer.ReasonPoll {
		t.Errorf("last = %+v, want a deploy woken by poll", last)
	}
	if got := get(t, siteURL+"/index.html"); got != "two" {
		t.Errorf("serves %q", got)
	}
}

// TestValidateStartsNothing: Caddy provisions a configuration it only
// validates (`caddy validate`, the admin API's checks). That must neither
// take the folder of a running deployer nor start one: deployers start with
// the github_webhook app, which only a running configuration starts.
func TestValidateStartsNothing(t *testing.T) {
	s := newTestSite(t)
	c1 := s.repo.Commit("test commit", map[string]string{"index.html": "v1"})
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
