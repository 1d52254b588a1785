package caddywebhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

const failedCommit = "deadbeefdeadbeefdeadbeefdeadbeefdeadbeef"

// gitHubWeb is github.com, as a handler with the default forge has it.
var gitHubWeb = forgeWeb{Kind: forgeGitHub, Base: "https://github.com"}

// pageStatus is a target as the unit tests render it: a deploy running, a
// group of two nodes of which one lags, a build that failed before the
// last good deploy, markup in what a build printed, and two previews: one
// live, one of a fork whose build failed.
func pageStatus(now time.Time) (deployer.Status, []deployer.Deploy) {
	live := strings.Repeat("1a2b3c4d", 5)
	failed := failedCommit
	st := deployer.Status{
		Path: "/srv/blog", Repo: "octocat/blog", Branch: "main",
		Remote:  "https://github.com/octocat/blog.git",
		Live:    &deployer.Live{Commit: live, Release: "20261205T100000Z-1a2b3c4d1a2b", At: now.Add(-time.Hour)},
		Running: &deployer.Running{Reason: deployer.ReasonDelivery, Commit: strings.Repeat("c0ffee00", 5), Since: now.Add(-3 * time.Second)},
		Last: &deployer.Result{Result: "ok", Reason: deployer.ReasonDelivery, Commit: live, At: now.Add(-time.Hour),
			Log: "/srv/blog/releases/20261205T100000Z-1a2b3c4d1a2b.log"},
		Cluster: &deployer.ClusterStatus{Name: "web", Node: "node-a", Nodes: []deployer.NodeStatus{
			{Node: "node-a", Host: "a.example", Commit: live, Converged: true, Self: true},
			{Node: "node-b", Host: "b.example", Commit: failed},
		}},
		Previews: []deployer.PreviewStatus{
			{Number: 7, Host: "pr-7.preview.example.com", URL: "https://pr-7.preview.example.com/",
				Head: strings.Repeat("7e57", 10), Live: strings.Repeat("7e57", 10), State: deployer.PreviewLive, Update: now.Add(-time.Minute)},
			{Number: 8, Host: "pr-8.preview.example.com", URL: "https://pr-8.preview.example.com/",
				Head: strings.Repeat("8bad", 10), State: deployer.PreviewError, Fork: true, Error: "running hugo: <b>exit status 1</b>", Update: now.Add(-2 * time.Minute)},
		},
	}
	history := []deployer.Deploy{
		{Result: "ok", Reason: deployer.ReasonDelivery, Commit: live, Started: now.Add(-time.Hour - 4*time.Second), Duration: deployer.Seconds(4 * time.Second)},
		{Result: "error", Reason: deployer.ReasonPoll, Started: now.Add(-90 * time.Minute), Duration: deployer.Seconds(time.Second),
			Error: "fetching main: the remote hung up", Repeated: 3},
		{Result: "error", Reason: deployer.ReasonDelivery, Commit: failed, Release: "20261205T100000Z-deadbeefdead", Started: now.Add(-2 * time.Hour), Duration: deployer.Seconds(9 * time.Second),
			Error: "running hugo --minify: exit status 1", OutputTail: "Error: template: <script>alert(1)</script> not found"},
		{Result: "ok", Reason: deployer.ReasonStartup, Commit: "not-a-commit", Started: now.Add(-3 * time.Hour), Duration: deployer.Seconds(2 * time.Second)},
	}
	return st, history
}

// TestStatusPageTemplate renders one target and checks what the page
// says, and what it must not: markup from a build is text, no script, no
// remote or log path, a link only for a commit that is one.
func TestStatusPageTemplate(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	st, history := pageStatus(now)
	failed := failedCommit
	var buf bytes.Buffer
	if err := renderStatusPage(&buf, []statusView{viewOf(st, history, gitHubWeb)}, now); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	for _, want := range []string{
		`<meta name="viewport"`,
		`<meta http-equiv="refresh" content="5">`, // a deploy runs
		`<a href="https://github.com/octocat/blog/commit/` + st.Live.Commit + `"><code>1a2b3c4d1a2b</code></a>`,
		`deploying`, `c0ffee00c0ff`, `(delivery) for 3.0s`,
		`Group <code>web</code> <span class="badge error">not converged</span>`, `node-b`, `b.example`,
		`<svg class="chart"`, `<rect class="error"`, `<rect class="ok"`, `longest 9.0s`,
		`running hugo --minify: exit status 1`,
		`Error: template: &lt;script&gt;alert(1)&lt;/script&gt; not found`,
		`<code>not-a-commit</code>`,
		`fetching main: the remote hung up`, `error ×3`,
		`Last failed build <span class="muted">· 2026-12-05 10:00:00 UTC · <a href="https://github.com/octocat/blog/commit/` + failed + `">`,
		// A live preview: its number linked to the pull request, its
		// host to the preview, its head to the commit.
		`<td><a href="https://github.com/octocat/blog/pull/7">#7</a></td>`,
		`<a href="https://pr-7.preview.example.com/">pr-7.preview.example.com</a>`,
		`<a href="https://github.com/octocat/blog/commit/` + strings.Repeat("7e57", 10) + `"><code>7e577e577e57</code></a>`,
		`<span class="badge ok">live</span>`,
		// A fork's that failed and serves nothing: no link to its host,
		// its error as text.
		`<a href="https://github.com/octocat/blog/pull/8">#8</a> <span class="muted">fork</span>`,
		`<span class="muted">pr-8.preview.example.com</span>`,
		`<span class="badge error">failed</span> <span class="error">running hugo: &lt;b&gt;exit status 1&lt;/b&gt;</span>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	for _, unwanted := range []string{"<script", st.Remote, ".log", "commit/not-a-commit", `href="https://pr-8.`} {
		if strings.Contains(page, unwanted) {
			t.Errorf("the page holds %s", unwanted)
		}
	}
	if n := strings.Count(page, "<rect "); n != len(history) {
		t.Errorf("%d bars in the chart, want %d", n, len(history))
	}
	if n := strings.Count(page, `<tr class=`); n != len(history) {
		t.Errorf("%d rows of deploys, want %d", n, len(history))
	}

	t.Run("idle, alone, nothing failed", func(t *testing.T) {
		st.Running, st.Cluster, st.Previews = nil, nil, nil
		buf.Reset()
		if err := renderStatusPage(&buf, []statusView{viewOf(st, history[:1], gitHubWeb)}, now); err != nil {
			t.Fatal(err)
		}
		page := buf.String()
		for _, unwanted := range []string{"http-equiv", "Group", "Last failed", "deploying", "Previews"} {
			if strings.Contains(page, unwanted) {
				t.Errorf("the page holds %s", unwanted)
			}
		}
		if !strings.Contains(page, `<span class="badge ok">ok</span>`) {
			t.Errorf("no ok badge:\n%s", page)
		}
	})
}

// BenchmarkStatusPage renders the page of one target whose history holds
// 1,000 deploys (the history's bound), as ServeHTTP does after reading
// the target: the view, then the template.
func BenchmarkStatusPage(b *testing.B) {
	now := time.Now()
	st, _ := pageStatus(now)
	history := make([]deployer.Deploy, 1000)
	for i := range history {
		history[i] = deployer.Deploy{Result: "ok", Reason: deployer.ReasonDelivery, Commit: fmt.Sprintf("%040x", i),
			Release: "20261205T100000Z-000000000000", Started: now.Add(-time.Duration(i) * time.Hour), Duration: deployer.Seconds(time.Duration(i%50+1) * time.Second)}
		if i%7 == 3 {
			history[i].Result, history[i].Error = "error", "running hugo --minify: exit status 1"
		}
		if i%7 == 3 && i < 70 {
			history[i].OutputTail = strings.Repeat("Error: a line of the build's output\n", 100)
		}
	}
	b.Run("html", func(b *testing.B) {
		var buf bytes.Buffer
		for b.Loop() {
			buf.Reset()
			if err := renderStatusPage(&buf, []statusView{viewOf(st, history, gitHubWeb)}, now); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(buf.Len()), "page-bytes")
	})
	// The baseline: the same target and its whole history as JSON, as
	// the admin API's encoder writes it.
	b.Run("json", func(b *testing.B) {
		var buf bytes.Buffer
		for b.Loop() {
			buf.Reset()
			st.History = history
			enc := json.NewEncoder(&buf)
			enc.SetIndent("", "  ")
			if err := enc.Encode([]deployer.Status{st}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(buf.Len()), "page-bytes")
	})
}

// TestStatusPageAfterRealDeploys: after real deploys through an in-process
// Caddy, one good and one whose build fails, the admin API's history holds
// both, newest first, and the page at /_deploys, as a real browser
// (headless chromium) renders it, shows the live commit linked to the
// forge, both deploys, the chart, the failed build's output, and a live
// preview linked to its pull request and its host, with no
// script and no secret; it is sent with a policy that allows no script.
func TestStatusPageAfterRealDeploys(t *testing.T) {
	s := newTestSite(t)
	c1 := s.repo.Commit("a good version", map[string]string{"index.html": "v1"})
	config := strings.Replace(s.previewsCaddyfile("max 2", `command sh -c "if test -e broken; then echo the build broke on purpose >&2; exit 1; fi"`),
		"\tfile_server\n", "\tfile_server\n\tgithub_webhook_status /_deploys\n", 1)
	s.start(config)
	s.waitLive(c1)
	head := s.repo.PullRequest(3, "a change to review", map[string]string{"index.html": "pull request 3"})
	if status, answer := sendPullRequest(t, testkit.PullRequestEvent{Number: 3, Action: "opened", Head: head}); status != http.StatusAccepted {
		t.Fatalf("opened: %d %s", status, answer)
	}
	preview := s.waitPreview(3, head)
	c2 := s.repo.Commit("a broken version", map[string]string{"broken": "yes"})
	look := s.looks()
	if code, body := adminDo(t, http.MethodPost, "/github_webhook/deploy", `{"path": "`+s.path+`"}`, nil); code != http.StatusAccepted {
		t.Fatalf("POST deploy: %d %s", code, body)
	}
	s.waitLook(look, deployer.ReasonManual, deployer.OutcomeFailed)

	t.Run("admin API", func(t *testing.T) {
		var list []deployer.Status
		if code, body := adminDo(t, http.MethodGet, "/github_webhook/deploys", "", &list); code != 200 || len(list) != 1 {
			t.Fatalf("GET deploys: %d %s", code, body)
		}
		h := list[0].History
		if len(h) != 2 || h[0].Commit != c2 || h[0].Result != "error" || h[0].Reason != deployer.ReasonManual ||
			h[1].Commit != c1 || h[1].Result != "ok" || h[1].Reason != deployer.ReasonStartup {
			t.Errorf("history = %+v", h)
		}
		if h[0].OutputTail != "" {
			t.Errorf("the status's history holds an output tail: %q", h[0].OutputTail)
		}
	})

	url := siteURL + "/_deploys"
	t.Run("headers", func(t *testing.T) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" ||
			!strings.HasPrefix(resp.Header.Get("Content-Security-Policy"), "default-src 'none'; style-src 'unsafe-inline';") {
			t.Errorf("%s, headers %v", resp.Status, resp.Header)
		}
		req, _ := http.NewRequest(http.MethodPost, url, nil)
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST: %v %v", resp, err)
		} else {
			resp.Body.Close()
		}
	})

	t.Run("in a browser", func(t *testing.T) {
		dom := dumpDOM(t, url)
		want := []string{
			`href="https://github.com/` + testRepo + `/commit/` + c1 + `"`,
			"<svg", `<rect class="ok"`, `<rect class="error"`,
			"the build broke on purpose", "exit status 1",
			"startup", "manual", c1[:12], c2[:12],
			// The preview: its pull request, its host and its head.
			`<a href="https://github.com/` + testRepo + `/pull/3">#3</a>`,
			`<a href="` + preview.URL + `">` + preview.Host + `</a>`,
			`href="https://github.com/` + testRepo + `/commit/` + head + `"`, `>live</span>`,
		}
		for _, w := range want {
			if !strings.Contains(dom, w) {
				t.Errorf("the page as chromium renders it lacks %s", w)
			}
		}
		if n := len(regexp.MustCompile(`<tr class="(ok|error)"`).FindAllString(dom, -1)); n != 2 {
			t.Errorf("%d deploys in the table, want 2", n)
		}
		for _, secret := range []string{"<script", testSecret, testOldSecret, testToken} {
			if strings.Contains(dom, secret) {
				t.Errorf("the page holds %q", secret)
			}
		}
		if t.Failed() {
			t.Logf("the page:\n%s", dom)
		}
	})
}

// dumpDOM renders url in headless chromium and returns the DOM it built,
// or skips the test when chromium is not installed.
func dumpDOM(t *testing.T, url string) string {
	t.Helper()
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		t.Skip("chromium is not installed (on PATH), so the status page is not rendered by a browser; Debian: sudo apt-get install chromium")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--no-first-run", "--user-data-dir="+t.TempDir(), "--dump-dom", url)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium --dump-dom %s: %v\n%s", url, err, stderr.Bytes())
	}
	if stdout.Len() == 0 {
		t.Fatalf("chromium printed no DOM:\n%s", stderr.Bytes())
	}
	return stdout.String()
}
