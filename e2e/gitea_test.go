package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// giteaVersion is the Gitea that scripts/gitea builds.
const giteaVersion = "1.27.3"

// giteaBinary returns the Gitea binary that scripts/gitea built ($GITEA_BIN
// names another, with Gitea's options and templates folders beside it), or
// skips the test, saying how to build it.
func giteaBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("GITEA_BIN"); p != "" {
		return p
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Skipf("no cache folder for the Gitea binary: %v", err)
	}
	p := filepath.Join(cache, "caddy-github-webhook", "gitea-"+giteaVersion, "gitea")
	if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
		t.Skipf("Gitea %s is not built (no %s): ./scripts/gitea builds it once (about 30 minutes cold), as .ci/run does", giteaVersion, p)
	}
	if _, err := os.Stat(filepath.Join(p, "..", "options", "locale", "locale_en-US.json")); err != nil {
		t.Skipf("Gitea %s is built but its run-time files are not beside it: ./scripts/gitea puts them there", giteaVersion)
	}
	return p
}

// giteaServer is a Gitea running on SQLite on 127.0.0.1 for one test, with
// an admin user octocat and an API token of theirs.
type giteaServer struct {
	base     string // http://127.0.0.1:<port>
	password string
	token    string
}

// startGitea runs bin on a new SQLite database in a temporary folder,
// delivering webhooks to loopback addresses, until the test ends.
func startGitea(t *testing.T, bin string) *giteaServer {
	t.Helper()
	dir := t.TempDir()
	port := testkit.Ports(t, 1)[0]
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	g := &giteaServer{base: fmt.Sprintf("http://127.0.0.1:%d", port), password: "e2e-" + randomHex(t, 12)}
	ini := filepath.Join(dir, "app.ini")
	config := fmt.Sprintf(`APP_NAME = e2e
RUN_MODE = prod
RUN_USER = %s
WORK_PATH = %s
I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = %t

[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = %d
ROOT_URL = %s/
DISABLE_SSH = true
START_SSH_SERVER = false
OFFLINE_MODE = true
LFS_START_SERVER = false
STATIC_ROOT_PATH = %s

[database]
DB_TYPE = sqlite3
PATH = %s

[repository]
ROOT = %s

[security]
INSTALL_LOCK = true
SECRET_KEY = %s
INTERNAL_TOKEN = %s
ALLOWED_HOST_LIST = loopback

[webhook]
DELIVER_TIMEOUT = 10

[service]
DISABLE_REGISTRATION = true

[mailer]
ENABLED = false

[cron]
ENABLED = false

[log]
MODE = console
LEVEL = Warn
ROOT_PATH = %s
`, me.Username, dir, os.Getuid() == 0, port, g.base, filepath.Dir(bin), filepath.Join(dir, "gitea.db"), filepath.Join(dir, "repos"),
		randomHex(t, 32), randomHex(t, 48), filepath.Join(dir, "log"))
	if err := os.WriteFile(ini, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"HOME=" + dir, "USER=" + me.Username, "GITEA_WORK_DIR=" + dir, "PATH=" + os.Getenv("PATH"),
		"GIT_CONFIG_NOSYSTEM=1", "TMPDIR=" + dir}
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(bin, append(args, "--config", ini, "--work-path", dir)...)
		cmd.Env, cmd.Dir = env, dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("gitea %s: %v\n%s", args[0], err, out)
		}
	}
	run("migrate")
	run("admin", "user", "create", "--admin", "--username", "octocat", "--password", g.password,
		"--email", "octocat@example.com", "--must-change-password=false")

	out := &syncBuffer{}
	cmd := exec.Command(bin, "web", "--config", ini, "--work-path", dir)
	cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = env, dir, out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("gitea's output:\n%s", out.String())
		}
	})
	waitUntil(t, 2*time.Minute, "Gitea to answer", func() error {
		select {
		case <-done:
			return fmt.Errorf("gitea exited:\n%s", out.String())
		default:
		}
		code, body, err := get(g.base + "/api/v1/version")
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("GET /api/v1/version: %d %v %s", code, err, body)
		}
		return nil
	})

	var tok struct {
		SHA1 string `json:"sha1"`
	}
	if code := g.call(t, "POST", "/users/octocat/tokens", map[string]any{"name": "caddy",
		"scopes": []string{"write:repository", "read:user"}}, &tok, true); code != http.StatusCreated || tok.SHA1 == "" {
		t.Fatalf("creating a token: %d", code)
	}
	g.token = tok.SHA1
	return g
}

// call makes a request to Gitea's API with the token (with the password
// when basic), and decodes the answer into out; it returns the status.
func (g *giteaServer) call(t *testing.T, method, path string, body, out any, basic bool) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, g.base+"/api/v1"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if basic {
		req.SetBasicAuth("octocat", g.password)
	} else {
		req.Header.Set("Authorization", "token "+g.token)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: decoding %s: %v", method, path, data, err)
		}
	}
	if resp.StatusCode/100 != 2 {
		t.Logf("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	return resp.StatusCode
}

// adminPost POSTs body to Caddy's admin endpoint of s.
func adminPost(t *testing.T, s *site, path, body string) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Post("http://"+s.admin+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestGiteaPushDeploysAndReportsStatus runs a real Gitea and the Caddy
// binary with forge gitea, deployments and require_checks CI: a push with
// real git to a private repository on Gitea makes Gitea deliver its signed
// push webhook to Caddy; the tip waits while Gitea's combined status has no
// CI; once CI succeeded on Gitea, a deploy fetches the commit from Gitea
// over http on loopback with the token and puts it live, and the commit
// status deploy/production, success, linking the site, is read back
// through Gitea's API.
func TestGiteaPushDeploysAndReportsStatus(t *testing.T) {
	bin := giteaBinary(t)
	const siteAddress = "https://blog.example.com"
	g := startGitea(t, bin)
	if code := g.call(t, "POST", "/user/repos", map[string]any{"name": "site", "private": true, "default_branch": "main"}, nil, true); code != http.StatusCreated {
		t.Fatalf("creating the repository: %d", code)
	}

	s := newSite(t, "site")
	env := append(home(t), "GITEA_TOKEN="+g.token)
	caddy := startCaddy(t, s, s.caddyfile(g.base+"/octocat/site.git", "site",
		"forge gitea "+g.base,
		"token {env.GITEA_TOKEN}",
		"deployments production "+siteAddress,
		"require_checks CI",
	), env)

	hook := map[string]any{"type": "gitea", "active": true, "events": []string{"push"}, "branch_filter": "*",
		"config": map[string]string{"url": s.hook(), "content_type": "json", "secret": secret}}
	if code := g.call(t, "POST", "/repos/octocat/site/hooks", hook, nil, false); code != http.StatusCreated {
		t.Fatalf("adding the webhook: %d", code)
	}

	rem := testkit.NewRemote(t)
	rem.Git("remote", "set-url", "origin", strings.Replace(g.base, "http://", "http://octocat:"+g.password+"@", 1)+"/octocat/site.git")
	commit := rem.Commit("A page served from Gitea", map[string]string{"index.html": "<h1>from gitea</h1>\n"})

	// Delivered; its CI has not reported: the tip waits.
	waitUntil(t, time.Minute, "the delivered push to wait for CI", func() error {
		st := s.status(t)
		if c := st.Checked; c == nil || c.Commit != commit || c.Reason != deployer.ReasonDelivery || c.Outcome != "waiting" || !strings.Contains(c.Detail, `"CI"`) {
			return fmt.Errorf("checked %+v", st.Checked)
		}
		return nil
	})
	// CI reports success on Gitea; a manual deploy looks again.
	if code := g.call(t, "POST", "/repos/octocat/site/statuses/"+commit, map[string]string{"state": "success", "context": "CI"}, nil, false); code != http.StatusCreated {
		t.Fatalf("setting the CI status: %d", code)
	}
	if code, body := adminPost(t, s, "/github_webhook/deploy", `{"path": "`+s.path+`"}`); code != http.StatusAccepted {
		t.Fatalf("POST /github_webhook/deploy: %d %s", code, body)
	}
	s.waitLive(t, commit)
	if err := pageShows(s.url("/index.html"), "from gitea"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, time.Minute, "the status deploy/production on Gitea", func() error {
		var combined struct {
			Statuses []struct {
				Context   string `json:"context"`
				Status    string `json:"status"`
				TargetURL string `json:"target_url"`
			} `json:"statuses"`
		}
		if code := g.call(t, "GET", "/repos/octocat/site/commits/"+commit+"/status", nil, &combined, false); code != http.StatusOK {
			return fmt.Errorf("GET the combined status: %d", code)
		}
		for _, st := range combined.Statuses {
			if st.Context == "deploy/production" && st.Status == "success" && st.TargetURL == siteAddress {
				return nil
			}
		}
		return fmt.Errorf("statuses %+v", combined.Statuses)
	})
	for _, e := range caddy.Log() {
		if strings.Contains(fmt.Sprint(e), g.token) {
			t.Errorf("Caddy's log holds the token: %v", e)
		}
	}
}
