package caddywebhook

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	zapobserver "go.uber.org/zap/zaptest/observer"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// TestNotifyAcrossReload: with on failure recovered success, a destination
// gets each deploy's result as it comes: the first good deploy (success),
// a failure, and, after Caddy loaded a new configuration in between, the
// recovery; each message names the path, repository, branch and commit,
// and links the commit on the forge of its configuration (github.com,
// then a Gitea).
func TestNotifyAcrossReload(t *testing.T) {
	var mu sync.Mutex
	var got []map[string]any
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &m)
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
	}))
	defer rcv.Close()
	received := func(n int) []map[string]any {
		t.Helper()
		var list []map[string]any
		testkit.WaitFor(t, time.Minute, fmt.Sprintf("%d notifications", n), func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(got) < n {
				return fmt.Errorf("%d so far", len(got))
			}
			list = append([]map[string]any(nil), got...)
			return nil
		})
		return list
	}

	s := newTestSite(t)
	config := func(extra string) string {
		return s.caddyfile(`command sh -c "if test -e broken; then echo broke >&2; exit 1; fi"
		notify ` + rcv.URL + ` {
			on failure recovered success
		}
		` + extra)
	}
	good := s.startLive(config(""))
	broken := s.repo.Commit("broken", map[string]string{"broken": "yes"})
	deployerOf(s.path).Wake(deployer.ReasonManual)
	received(2)

	// The new configuration's forge links the recovery's commit on it.
	if err := loadConfig(config("poll 1h\n\t\tforge gitea https://git.example.com")); err != nil {
		t.Fatal(err)
	}
	s.repo.Remove("broken")
	fixed := s.repo.Commit("fixed", nil)
	deployerOf(s.path).Wake(deployer.ReasonManual)
	list := received(3)

	want := []struct{ typ, commit, url string }{
		{"deploy.success", good, "https://github.com/" + testRepo + "/commit/" + good},
		{"deploy.failure", broken, "https://github.com/" + testRepo + "/commit/" + broken},
		{"deploy.recovered", fixed, "https://git.example.com/" + testRepo + "/commit/" + fixed},
	}
	if len(list) != len(want) {
		t.Fatalf("%d notifications, want %d: %v", len(list), len(want), list)
	}
	for i, w := range want {
		data, _ := list[i]["data"].(map[string]any)
		if list[i]["type"] != w.typ || data["commit"] != w.commit || data["path"] != s.path ||
			data["repo"] != testRepo || data["branch"] != testBranch || data["commit_url"] != w.url {
			t.Errorf("notification %d = %v, want %s of %s", i+1, list[i], w.typ, w.commit)
		}
	}
	if data, _ := list[1]["data"].(map[string]any); !strings.HasPrefix(fmt.Sprint(data["error"]), "build failed: sh exited 1") {
		t.Errorf("the failure's error is %q", data["error"])
	}
}

// TestWarnEnvSubstitutionInNotify: a notify URL or secret written as
// {$NAME} (a Slack or Discord URL is a credential) is warned about as the
// handler's secret is, at its line, naming the variable, never the value.
func TestWarnEnvSubstitutionInNotify(t *testing.T) {
	const url, key = "https://hooks.slack.com/services/T0/B0/adapttimecredential", "whsec_YWRhcHQtdGltZS1ub3RpZnkta2V5"
	t.Setenv("CWH_SUBST_SLACK", url)
	t.Setenv("CWH_SUBST_NOTIFY_KEY", key)
	input := "github_webhook {\n" +
		"\trepo octocat/blog\n" +
		"\tnotify " + url + "\n" +
		"\tnotify https://example.com/hook {\n" +
		"\t\tsecret " + key + "\n" +
		"\t}\n" +
		"\tnotify {env.CWH_SUBST_SLACK} {\n" +
		"\t\tformat slack\n" +
		"\t}\n" +
		"}"
	core, logs := zapobserver.New(zapcore.DebugLevel)
	h := httpcaddyfile.Helper{Dispenser: caddyfile.NewTestDispenser(input)}
	h.Next()
	warnCaddyfile(h, zap.New(core))
	var got []string
	for _, e := range logs.All() {
		if strings.Contains(e.Message, url) || strings.Contains(e.Message, key) {
			t.Errorf("the warning holds the value: %s", e.Message)
		}
		f := e.ContextMap()
		got = append(got, fmt.Sprintf("%s@%d", f["variable"], f["line"]))
	}
	if want := "CWH_SUBST_SLACK@3 CWH_SUBST_NOTIFY_KEY@5"; strings.Join(got, " ") != want {
		t.Errorf("warnings %v, want %s", got, want)
	}
}
