package e2e

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// cliResult is what one run of "caddy github-webhook ..." printed, and its
// exit status.
type cliResult struct {
	stdout, stderr string
	code           int
}

// cli runs the built Caddy's "github-webhook" command with args.
func cli(t *testing.T, env []string, args ...string) cliResult {
	t.Helper()
	cmd := exec.Command(caddyBin, append([]string{"github-webhook"}, args...)...)
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	res := cliResult{stdout: out.String(), stderr: errOut.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("running caddy github-webhook %s: %v", strings.Join(args, " "), err)
	}
	return res
}

// expect fails the test unless r exited with code and its stdout and
// stderr together hold each of want.
func (r cliResult) expect(t *testing.T, code int, want ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.stdout+r.stderr, w) {
			t.Errorf("output does not hold %q\nstdout:\n%s\nstderr:\n%s", w, r.stdout, r.stderr)
		}
	}
}

// hook is one request a notification receiver got.
type hook struct {
	header http.Header
	body   []byte
}

// receivers is a local server standing in for Slack, Discord, ntfy and a
// JSON webhook: it records what each path is sent. /json answers 500 to
// its first two requests; /hang answers nothing until the test ends.
type receivers struct {
	*httptest.Server
	mu       sync.Mutex
	got      map[string][]hook
	jsonFail int
}

func newReceivers(t *testing.T) *receivers {
	r := &receivers{got: map[string][]hook{}, jsonFail: 2}
	release := make(chan struct{})
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
		name := strings.SplitN(strings.TrimPrefix(req.URL.Path, "/"), "/", 2)[0]
		r.mu.Lock()
		r.got[name] = append(r.got[name], hook{req.Header.Clone(), body})
		fail := name == "json" && r.jsonFail > 0
		if fail {
			r.jsonFail--
		}
		r.mu.Unlock()
		switch {
		case name == "hang":
			select {
			case <-release:
			case <-req.Context().Done():
			}
		case fail:
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	t.Cleanup(r.Close)
	t.Cleanup(func() { close(release) })
	return r
}

func (r *receivers) of(name string) []hook {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hook(nil), r.got[name]...)
}

// TestCommandLine runs every subcommand of "caddy github-webhook" against a
// running Caddy, with real deploys, finding the admin endpoint through
// --config: status (a table, and --json equal to the admin API; exit 1
// after a failed build, 2 for a path that is no target), deploy --wait,
// logs -f printing a running build's first line before the build ends
// (and going on past the admin server's 10 s read timeout), rollback and
// previews. Along the way, the deploy results are pushed to local
// receivers in every format: one message per failure and one per recovery,
// none for the first good deploy, the json one verified with the Standard
// Webhooks library after two 500s, and no secret in any of them, nor in the
// build's environment; a receiver that never answers delays no deploy.
func TestCommandLine(t *testing.T) {
	const (
		notifySecretKey = "e2e notification signing key 32b"
		slackCredential = "T0E2E/B0E2E/slackcredential0123456789"
	)
	notifySecret := "whsec_" + base64.StdEncoding.EncodeToString([]byte(notifySecretKey))
	rcv := newReceivers(t)
	s := newSite(t, "site")
	r := newRemote(t, "html")
	first := r.Commit("first", nil)
	gate := filepath.Join(t.TempDir(), "gate")
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	caddyfile := s.caddyfile(r.Bare, "blog",
		"command sh -c `echo \"build of $DEPLOY_COMMIT\"; env > env.txt; if [ -e fail-me ]; then echo \"broken build\"; exit 3; fi; while [ ! -e \"$GATE\" ]; do sleep 0.05; done; echo \"build done\"`",
		"env GATE "+gate,
		"notify "+rcv.URL+"/json {\n\t\t\tformat json\n\t\t\tsecret {env.NOTIFY_SECRET}\n\t\t}",
		"notify {env.SLACK_URL} {\n\t\t\tformat slack\n\t\t}",
		"notify "+rcv.URL+"/discord {\n\t\t\tformat discord\n\t\t}",
		"notify "+rcv.URL+"/ntfy {\n\t\t\tformat ntfy\n\t\t}",
		"notify "+rcv.URL+"/hang {\n\t\t\ton failure recovered success\n\t\t}",
	)
	env := append(home(t), "NOTIFY_SECRET="+notifySecret, "SLACK_URL="+rcv.URL+"/slack/services/"+slackCredential)
	p := startCaddy(t, s, caddyfile, env)
	s.waitLive(t, first)
	cliEnv := home(t) // the command line needs none of Caddy's variables
	conf := "--config=" + p.Config

	// A good deploy: status is a table, exit 0; --json is the admin API's.
	cli(t, cliEnv, "status", conf).expect(t, 0, "PATH", s.path, first[:12], "ok")
	cli(t, cliEnv, "status", "--address", s.admin, s.path).expect(t, 0, first[:12])
	res := cli(t, cliEnv, "status", "--json", conf)
	res.expect(t, 0)
	_, api, err := get("http://" + s.admin + "/github_webhook/deploys")
	if err != nil {
		t.Fatal(err)
	}
	var fromCLI, fromAPI any
	if err := json.Unmarshal([]byte(res.stdout), &fromCLI); err != nil {
		t.Fatalf("status --json printed %q: %v", res.stdout, err)
	}
	json.Unmarshal([]byte(api), &fromAPI)
	if !reflect.DeepEqual(fromCLI, fromAPI) {
		t.Errorf("status --json differs from the admin API:\n%s\n%s", res.stdout, api)
	}
	cli(t, cliEnv, "status", "--address", "127.0.0.1:1").expect(t, 2, "cannot reach Caddy's admin API at 127.0.0.1:1")
	cli(t, cliEnv, "status", conf, "/no/such/site").expect(t, 2, `no github_webhook target has path "/no/such/site"`, s.path)

	// A failed build: deploy --wait and status exit 1 and say what to do;
	// logs shows the failed build's output.
	broken := r.Commit("broken", map[string]string{"fail-me": "yes"})
	cli(t, cliEnv, "deploy", "--wait", conf, s.path).expect(t, 1, "failed", "caddy github-webhook logs "+s.path)
	st := s.status(t)
	if st.Last == nil || st.Last.Result != "error" || st.Last.Commit != broken {
		t.Fatalf("after the broken commit, last = %+v", st.Last)
	}
	cli(t, cliEnv, "status", conf).expect(t, 1, "the last deploy failed", broken[:12], "caddy github-webhook logs "+s.path+" "+st.Last.Release)
	cli(t, cliEnv, "status", "--json", conf, s.path).expect(t, 1, `"result": "error"`)
	cli(t, cliEnv, "logs", conf, s.path).expect(t, 0, "build of "+broken, "broken build")

	// The fix builds while the test holds the gate: logs -f prints the
	// build's first line while it runs, and the rest once it ends.
	os.Remove(gate)
	r.Remove("fail-me")
	fixed := r.Commit("fixed", nil)
	cli(t, cliEnv, "deploy", conf, s.path).expect(t, 0, "deploy queued")
	waitUntil(t, time.Minute, "the fix to build", func() error {
		if run := s.status(t).Running; run == nil || run.Commit != fixed || run.Release == "" {
			return fmt.Errorf("running %+v", run)
		}
		return nil
	})
	follow := exec.Command(caddyBin, "github-webhook", "logs", "-f", conf, s.path)
	follow.Env = cliEnv
	out, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { follow.Process.Kill(); follow.Wait() })
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func(want string) {
		t.Helper()
		timeout := time.After(time.Minute)
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					t.Fatalf("logs -f ended before %q", want)
				}
				if strings.Contains(line, want) {
					return
				}
			case <-timeout:
				t.Fatalf("logs -f printed no %q in a minute", want)
			}
		}
	}
	next("build of " + fixed)
	if run := s.status(t).Running; run == nil || run.Commit != fixed {
		t.Fatalf("the first line came after the build ended: running %+v", run)
	}
	// Past the admin server's 10 s read timeout, the follow goes on.
	time.Sleep(11 * time.Second)
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	next("build done")
	for range lines {
	}
	if err := follow.Wait(); err != nil {
		t.Errorf("logs -f ended with %v", err)
	}
	s.waitLive(t, fixed)
	cli(t, cliEnv, "status", conf).expect(t, 0, fixed[:12])

	// Rollback, to the previous kept release (the first commit's), and to
	// a release that does not exist.
	cli(t, cliEnv, "rollback", conf, s.path).expect(t, 0, "live is now", first[:12])
	if st := s.status(t); st.Live == nil || st.Live.Commit != first {
		t.Errorf("after rollback, live = %+v", st.Live)
	}
	cli(t, cliEnv, "rollback", conf, s.path, "20200101T000000Z-000000000000").expect(t, 2, s.path, "no such release")

	// Previews: none here; removing one of a path that is no target is 404.
	cli(t, cliEnv, "previews", conf, s.path).expect(t, 0, "has no previews")
	cli(t, cliEnv, "previews", "--json", conf, s.path).expect(t, 0, "[]")
	cli(t, cliEnv, "previews", "rm", conf, "/no/such/site", "7").expect(t, 2, "404")

	// Notifications: one failure and one recovery per receiver, the first
	// good deploy not news, json retried after two 500s keeping its id.
	waitUntil(t, time.Minute, "the recovery's notifications", func() error {
		for _, name := range []string{"slack", "discord", "ntfy"} {
			if n := len(rcv.of(name)); n < 2 {
				return fmt.Errorf("%s got %d", name, n)
			}
		}
		if n := len(rcv.of("json")); n < 4 {
			return fmt.Errorf("json got %d", n)
		}
		return nil
	})
	time.Sleep(time.Second) // nothing more comes
	wh, err := standardwebhooks.NewWebhook(notifySecret)
	if err != nil {
		t.Fatal(err)
	}
	jsonHooks := rcv.of("json")
	if len(jsonHooks) != 4 {
		t.Errorf("json got %d requests, want 4 (two 500s, the failure, the recovery)", len(jsonHooks))
	}
	var types []string
	for i, h := range jsonHooks {
		if err := wh.Verify(h.body, h.header); err != nil {
			t.Errorf("json request %d does not verify: %v", i+1, err)
		}
		var m struct {
			Type string `json:"type"`
			Data struct {
				Path, Commit, Repo string
			} `json:"data"`
		}
		json.Unmarshal(h.body, &m)
		types = append(types, m.Type+" "+m.Data.Commit)
		if m.Data.Path != s.path || m.Data.Repo != "octocat/blog" {
			t.Errorf("json request %d: %s", i+1, h.body)
		}
	}
	if len(jsonHooks) == 4 {
		if jsonHooks[0].header.Get("webhook-id") != jsonHooks[2].header.Get("webhook-id") {
			t.Error("the retries of a message changed its webhook-id")
		}
		tampered := bytes.Replace(jsonHooks[2].body, []byte(broken), []byte(fixed), 1)
		if err := wh.Verify(tampered, jsonHooks[2].header); err == nil {
			t.Error("a tampered body verifies")
		}
		if want := []string{"deploy.failure " + broken, "deploy.failure " + broken, "deploy.failure " + broken, "deploy.recovered " + fixed}; !reflect.DeepEqual(types, want) {
			t.Errorf("json messages %q, want %q", types, want)
		}
	}
	for name, field := range map[string]string{"slack": "text", "discord": "content"} {
		got := rcv.of(name)
		if len(got) != 2 {
			t.Errorf("%s got %d messages, want a failure and a recovery", name, len(got))
			continue
		}
		for i, want := range []string{"deploy failed", "deployed again after a failure"} {
			var m map[string]any
			json.Unmarshal(got[i].body, &m)
			if text, _ := m[field].(string); !strings.Contains(text, want) || !strings.Contains(text, "octocat/blog") {
				t.Errorf("%s message %d: %s", name, i+1, got[i].body)
			}
		}
	}
	if ntfy := rcv.of("ntfy"); len(ntfy) != 2 {
		t.Errorf("ntfy got %d messages, want 2", len(ntfy))
	} else if body := string(ntfy[0].body); ntfy[0].header.Get("Priority") != "high" ||
		!strings.Contains(ntfy[0].header.Get("Title"), "deploy failed") ||
		!strings.Contains(body, broken[:12]) || !strings.Contains(body, "sh exited 3") || strings.Contains(body, "broken build") {
		// The error is one line naming the step, never the build's output.
		t.Errorf("ntfy failure: %v %s", ntfy[0].header, body)
	}
	if len(rcv.of("hang")) == 0 {
		t.Error("the receiver that hangs got nothing: it delayed nothing because nothing was sent")
	}

	// Nothing secret anywhere: not in a message, not in the build's
	// environment, not in Caddy's log, not in the metrics.
	_, metrics, _ := get("http://" + s.admin + "/metrics")
	envTxt, _ := os.ReadFile(filepath.Join(s.path, "current", "env.txt"))
	for _, h := range append(append(append(rcv.of("json"), rcv.of("slack")...), rcv.of("discord")...), rcv.of("ntfy")...) {
		for _, secretValue := range []string{notifySecretKey, notifySecret, slackCredential, secret} {
			if strings.Contains(string(h.body), secretValue) || strings.Contains(fmt.Sprint(h.header), secretValue) {
				t.Errorf("a notification holds a secret: %v %s", h.header, h.body)
			}
		}
	}
	for where, text := range map[string]string{"the build's env": string(envTxt), "caddy's log": p.Out(), "the metrics": metrics} {
		for _, secretValue := range []string{notifySecret, slackCredential, secret} {
			if strings.Contains(text, secretValue) {
				t.Errorf("%s holds a secret", where)
			}
		}
	}
	if !strings.Contains(metrics, `caddy_github_webhook_notifications_total{path="`+s.path+`",result="retry"}`) ||
		!strings.Contains(metrics, `caddy_github_webhook_notifications_total{path="`+s.path+`",result="ok"}`) {
		t.Errorf("the metrics do not count the notifications:\n%s", grepLines(metrics, "notifications"))
	}
}

func grepLines(text, word string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
