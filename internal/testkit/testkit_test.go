package testkit

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSign checks the example of GitHub's documentation ("Validating webhook
// deliveries"): what a receiver compares is exactly this string.
func TestSign(t *testing.T) {
	got := Sign("It's a Secret to Everybody", []byte("Hello, World!"))
	const want = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	if got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
}

// TestDeliverySend sends a delivery to a server that checks it as a
// receiver must: POST, JSON, the event and id headers, and a signature that
// verifies over the raw body.
func TestDeliverySend(t *testing.T) {
	body := []byte(`{"zen":"Keep it logically awesome."}`)
	var gotID string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		gotID = r.Header.Get("X-GitHub-Delivery")
		switch {
		case r.Method != http.MethodPost, r.Header.Get("Content-Type") != "application/json",
			r.Header.Get("X-GitHub-Event") != "ping":
			http.Error(w, "bad request", http.StatusBadRequest)
		case !hmac.Equal([]byte(r.Header.Get("X-Hub-Signature-256")), []byte(Sign("s3cret", raw))):
			http.Error(w, "signature mismatch", http.StatusUnauthorized)
		default:
			fmt.Fprintln(w, " pong ")
		}
	}))
	defer srv.Close()

	for _, tc := range []struct {
		name, id, secret string
		status           int
		answer           string
	}{
		{"signed with the secret", "fixed-id", "s3cret", http.StatusOK, "pong"},
		{"signed with another secret", "fixed-id", "other", http.StatusUnauthorized, "signature mismatch"},
		{"no id given", "", "s3cret", http.StatusOK, "pong"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, answer, err := Delivery{Event: "ping", ID: tc.id, Secret: tc.secret, Body: body}.Send(srv.Client(), srv.URL)
			if err != nil || status != tc.status || answer != tc.answer {
				t.Errorf("Send = %d %q %v, want %d %q", status, answer, err, tc.status, tc.answer)
			}
			if tc.id != "" && gotID != tc.id {
				t.Errorf("X-GitHub-Delivery = %q, want %q", gotID, tc.id)
			}
			if tc.id == "" && len(gotID) != 36 {
				t.Errorf("X-GitHub-Delivery = %q, want a new GUID", gotID)
			}
		})
	}
}

// TestPushPayload: the payload names the repository, branch and commits it
// was made for, and keeps the rest of GitHub's payload.
func TestPushPayload(t *testing.T) {
	b, err := PushPayload(Push{Repo: "octocat/blog", Branch: "main", Before: "aaa", After: "bbb", Message: "Add a post"})
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Ref, Before, After string
		Repository         struct {
			FullName      string `json:"full_name"`
			Name          string
			DefaultBranch string `json:"default_branch"`
			Owner         struct{ Login string }
		}
		HeadCommit struct{ ID, Message string } `json:"head_commit"`
		Commits    []struct{ ID string }
		Pusher     struct{ Name string }
	}
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	if p.Ref != "refs/heads/main" || p.Before != "aaa" || p.After != "bbb" ||
		p.Repository.FullName != "octocat/blog" || p.Repository.Name != "blog" ||
		p.Repository.DefaultBranch != "main" || p.Repository.Owner.Login != "octocat" ||
		p.HeadCommit.ID != "bbb" || p.HeadCommit.Message != "Add a post" ||
		len(p.Commits) != 1 || p.Commits[0].ID != "bbb" {
		t.Errorf("payload does not describe the push: %+v", p)
	}
	if p.Pusher.Name == "" {
		t.Error("the rest of GitHub's payload (pusher) is gone")
	}
	if _, err := PushPayload(Push{Repo: "blog", Branch: "main"}); err == nil {
		t.Error("a repository without owner made a payload")
	}
	raw, err := Fixture("ping-repo.json", nil)
	if err != nil || !json.Valid(raw) || !strings.Contains(string(raw), `"zen"`) {
		t.Errorf("Fixture(ping-repo.json) = %.60s, %v", raw, err)
	}
}

// TestRemote: what Commit returns is the tip of the bare repository's
// branch, holding the files written, copied and removed.
func TestRemote(t *testing.T) {
	r := NewRemote(t)
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "posts"), 0o755)
	os.WriteFile(filepath.Join(src, "posts", "a.md"), []byte("a"), 0o644)
	r.CopyFrom(src)
	first := r.Commit("first", map[string]string{"index.html": "v1", "old.txt": "x"})
	r.Remove("old.txt")
	second := r.Commit("second", map[string]string{"index.html": "v2"})

	git := func(args ...string) string {
		out, err := exec.Command("git", append([]string{"--git-dir", r.Bare}, args...)...).Output()
		if err != nil {
			t.Fatalf("git %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	if tip := git("rev-parse", "refs/heads/main"); tip != second || first == second {
		t.Errorf("the remote's main is %s, want %s (first %s)", tip, second, first)
	}
	if files := git("ls-tree", "-r", "--name-only", "main"); files != "index.html\nposts/a.md" {
		t.Errorf("the tip holds %q", files)
	}
	if got := git("show", "main:index.html"); got != "v2" {
		t.Errorf("index.html = %q", got)
	}
	if got := git("log", "--format=%s", "main"); got != "second\nfirst" {
		t.Errorf("history %q", got)
	}
}

// TestParseLog reads a log as Caddy writes it: plain lines before logging
// starts, then JSON lines.
func TestParseLog(t *testing.T) {
	log := `2026/01/01 00:00:00 using config from file
{"level":"info","ts":1,"logger":"http.handlers.github_webhook","msg":"deploy succeeded","commit":"abc","duration":1.5}
{"level":"error","ts":2,"logger":"http.handlers.github_webhook.deployer","msg":"deploy failed"}
{"level":"info","ts":3,"logger":"http.handlers.github_webhooks_other","msg":"other"}
not json
`
	entries, err := ParseLog(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		t.Fatalf("%d entries, want 3: %+v", len(entries), entries)
	}
	e := entries[0]
	if e.Level != "info" || e.Msg != "deploy succeeded" || e.Str("commit") != "abc" || e.Fields["duration"] != 1.5 || e.Str("duration") != "" {
		t.Errorf("first entry %+v", e)
	}
	for i, want := range []bool{true, true, false} {
		if got := entries[i].From("http.handlers.github_webhook"); got != want {
			t.Errorf("entry %d (%s) From = %v, want %v", i, entries[i].Logger, got, want)
		}
	}
}

// TestFreePorts: the ports are distinct and free to listen on.
func TestFreePorts(t *testing.T) {
	ports := Ports(t, 3)
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] || p <= 0 {
			t.Fatalf("ports %v", ports)
		}
		seen[p] = true
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("port %d is not free: %v", p, err)
		}
		l.Close()
	}
}

// fakeTB records a failure instead of ending the test.
type fakeTB struct {
	failed string
	dir    string
}

func (*fakeTB) Helper()           {}
func (f *fakeTB) TempDir() string { return f.dir }
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
}

// TestWaitFor: it returns as soon as the fact holds, and fails naming what
// it waited for and the last error when it does not.
func TestWaitFor(t *testing.T) {
	calls := 0
	tb := &fakeTB{}
	WaitFor(tb, time.Minute, "three calls", func() error {
		if calls++; calls < 3 {
			return fmt.Errorf("call %d", calls)
		}
		return nil
	})
	if tb.failed != "" || calls != 3 {
		t.Errorf("failed %q after %d calls", tb.failed, calls)
	}
	WaitFor(tb, 50*time.Millisecond, "a fact that never holds", func() error { return fmt.Errorf("still not") })
	if !strings.Contains(tb.failed, "a fact that never holds: still not") {
		t.Errorf("failure %q", tb.failed)
	}
}

// TestBinary builds Caddy from this module: it runs and lists this module's
// handler, and asking again gives the same file without building it again.
func TestBinary(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	bins, err := Binary(ctx, "./cmd/caddy")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bins[0], "list-modules").Output()
	if err != nil || !strings.Contains(string(out), "http.handlers.github_webhook") {
		t.Fatalf("%s list-modules: %v\n%s", bins[0], err, out)
	}
	before, err := os.Stat(bins[0])
	if err != nil {
		t.Fatal(err)
	}
	compiled := false
	again, err := Build(ctx, func([]string) { compiled = true }, "./cmd/caddy")
	if compiled {
		t.Error("Build said it compiles a binary it had built already")
	}
	if err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(again[0])
	if err != nil || again[0] != bins[0] || !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("asked again: %s (%v), want %s unchanged", again[0], err, bins[0])
	}
}

// TestStartCaddy runs Caddy from a Caddyfile on ports the kernel picked:
// the site answers once StartCaddy returns, its log is captured, a reload
// changes the answer, and SIGTERM ends the process. A second Caddy given
// the first one's admin endpoint is caught (the configuration there is not
// its own, or it could not listen), and killed.
func TestStartCaddy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	ports, err := FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	site := fmt.Sprintf("127.0.0.1:%d", ports[0])
	config := func(answer string) func(admin string) string {
		return func(admin string) string {
			return fmt.Sprintf("{\n\tadmin %s\n\tpersist_config off\n}\nhttp://%s {\n\trespond %q\n}\n", admin, site, answer)
		}
	}
	dir := t.TempDir()
	c, err := StartCaddy(ctx, CaddyOptions{Dir: dir, Config: config("one"), Expect: "one", Ready: []string{site}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if c.Running() {
			c.Kill()
		}
	}()
	answers := func(want string) error {
		resp, err := http.Get("http://" + site + "/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if string(b) != want {
			return fmt.Errorf("answers %q, want %q", b, want)
		}
		return nil
	}
	if err := answers("one"); err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(c.Config) != dir || filepath.Dir(c.Output) != dir || !strings.HasPrefix(c.Admin, "127.0.0.1:") {
		t.Errorf("config %s, output %s, admin %s", c.Config, c.Output, c.Admin)
	}

	second, err := StartCaddy(ctx, CaddyOptions{Dir: t.TempDir(), Admin: c.Admin, Config: config("two"), Expect: "two"})
	if err == nil {
		second.Kill()
		t.Error("a second Caddy on the first one's admin endpoint was taken for ready")
	}

	if err := c.Reload(ctx, config("two")(c.Admin)); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 10*time.Second, "the reloaded answer", func() error { return answers("two") })
	if err := c.Stop(syscall.SIGTERM, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if c.Running() || c.Err() != nil {
		t.Errorf("after SIGTERM: running %v, exit %v", c.Running(), c.Err())
	}
	if err := c.Stop(syscall.SIGTERM, time.Second); err != nil {
		t.Errorf("stopping a Caddy that exited: %v", err)
	}
	found := false
	for _, e := range c.Log() {
		found = found || e.Msg == "shutting down apps, then terminating"
	}
	if !found {
		t.Errorf("the log of the shutdown is not in the output:\n%s", c.Tail(2000))
	}
}

// TestGoList lists this package, and fails the test with go list's own
// error for a package that does not exist.
func TestGoList(t *testing.T) {
	if got := GoList(t, "-f", "{{.ImportPath}}", "."); len(got) != 1 || got[0] != Module+"/internal/testkit" {
		t.Errorf("GoList(.) = %q", got)
	}
	tb := &fakeTB{}
	GoList(tb, "./no-such-package")
	if !strings.Contains(tb.failed, "go list ./no-such-package") || !strings.Contains(tb.failed, "no-such-package") {
		t.Errorf("failure %q", tb.failed)
	}
}
