package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// secret is the webhook secret of the tests' Caddyfiles, which read it from
// the environment as users are told to.
const secret = "e2e-webhook-secret"

var (
	root     string // the module root
	caddyBin string // Caddy built from ./cmd/caddy
	demoBin  string // the demo built from ./cmd/demo
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	var err error
	if root, err = testkit.Root(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The README's build command, for both binaries at once; a run that
	// built them already for these sources (the bench, a second run) left
	// them in testkit's cache.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	bins, err := testkit.Binary(ctx, "./cmd/caddy", "./cmd/demo")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	caddyBin, demoBin = bins[0], bins[1]
	return m.Run()
}

// hugoInstalled reports whether hugo is on PATH and runs.
func hugoInstalled() bool {
	if _, err := exec.LookPath("hugo"); err != nil {
		return false
	}
	return exec.Command("hugo", "version").Run() == nil
}

func requireHugo(t *testing.T) {
	t.Helper()
	if !hugoInstalled() {
		t.Skip("hugo is not installed (not on PATH), so the Hugo blog cannot be built; CI installs it: apt-get install hugo")
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and readers at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// home is the private environment of one test's processes: HOME and XDG
// folders under a temporary folder, so that nothing touches the user's.
func home(t *testing.T) []string {
	h := t.TempDir()
	return append(os.Environ(),
		"HOME="+h,
		"XDG_CONFIG_HOME="+filepath.Join(h, ".config"),
		"XDG_DATA_HOME="+filepath.Join(h, ".local", "share"),
		"XDG_CACHE_HOME="+filepath.Join(h, ".cache"),
		"GITHUB_WEBHOOK_SECRET="+secret,
	)
}

// site is what one test's Caddy serves and deploys: ports the kernel picked
// for Caddy's admin endpoint and the site, and the deployer's folder.
type site struct {
	admin string // Caddy's admin address, 127.0.0.1:<port>
	port  int    // the site's HTTP port on 127.0.0.1
	path  string // the deployer's folder
}

// newSite picks the ports of a site deployed into a new folder named name.
func newSite(t *testing.T, name string) *site {
	ports := testkit.Ports(t, 2)
	return &site{
		admin: fmt.Sprintf("127.0.0.1:%d", ports[0]),
		port:  ports[1],
		path:  filepath.Join(t.TempDir(), name),
	}
}

// url returns the URL of p (starting with "/") on the site.
func (s *site) url(p string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", s.port, p) }

// hook is the URL of the site's github_webhook handler.
func (s *site) hook() string { return s.url("/_github") }

// caddyfile serves the site's folder (its current release) and deploys the
// repository octocat/<repo> from remote there, with the github_webhook
// subdirectives more (one per line) after the common ones.
func (s *site) caddyfile(remote, repo string, more ...string) string {
	return fmt.Sprintf(`{
	admin %s
}

http://127.0.0.1:%d {
	root * %s/current
	file_server

	github_webhook /_github {
		repo octocat/%s
		secret {env.GITHUB_WEBHOOK_SECRET}
		path %s
		branch main
		remote %s
		%s
	}
}
`, s.admin, s.port, s.path, repo, s.path, remote, strings.Join(more, "\n\t\t"))
}

// status returns the site's deploy status from the admin API.
func (s *site) status(t *testing.T) deployer.Status {
	t.Helper()
	code, body, err := get("http://" + s.admin + "/github_webhook/deploys")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /github_webhook/deploys: %d %v %s", code, err, body)
	}
	var list []deployer.Status
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatalf("decoding the deploys: %v\n%s", err, body)
	}
	for _, st := range list {
		if st.Path == s.path {
			return st
		}
	}
	t.Fatalf("no target %s in %s", s.path, body)
	return deployer.Status{}
}

// waitLive waits until commit is live and no deploy runs, and returns the
// status then.
func (s *site) waitLive(t *testing.T, commit string) deployer.Status {
	t.Helper()
	var st deployer.Status
	waitUntil(t, time.Minute, "commit "+commit[:12]+" to be live", func() error {
		if st = s.status(t); st.Live == nil || st.Live.Commit != commit || st.Running != nil {
			return fmt.Errorf("live %+v, running %+v, last %+v", st.Live, st.Running, st.Last)
		}
		return nil
	})
	return st
}

// caddyProc is a running Caddy binary, stopped when its test ends.
type caddyProc struct {
	*testkit.Caddy
	t *testing.T
}

// startCaddy writes caddyfile, the configuration of s, into a temporary
// folder and runs "caddy run --config <it>" with env, until the test ends.
// It returns once the admin endpoint answers with that configuration.
func startCaddy(t *testing.T, s *site, caddyfile string, env []string) *caddyProc {
	t.Helper()
	return launch(t, s, testkit.CaddyOptions{Dir: t.TempDir(), Config: func(string) string { return caddyfile }, Env: env})
}

// runCaddy runs "caddy run --config config" with env; see startCaddy.
func runCaddy(t *testing.T, s *site, config string, env []string) *caddyProc {
	t.Helper()
	return runCaddyWith(t, s, config, env, nil)
}

// runCaddyWith is runCaddy with attr for the process, such as the user it
// runs as; its working folder is config's.
func runCaddyWith(t *testing.T, s *site, config string, env []string, attr *syscall.SysProcAttr) *caddyProc {
	t.Helper()
	return launch(t, s, testkit.CaddyOptions{ConfigFile: config, Env: env, Attr: attr})
}

// launch starts Caddy with o for s: the built binary, s's admin endpoint,
// and the check that the Caddy answering there is this one, serving s's
// folder. The test kills it when it ends, and shows its output if it failed.
func launch(t *testing.T, s *site, o testkit.CaddyOptions) *caddyProc {
	t.Helper()
	o.Binary, o.Admin, o.Expect = caddyBin, s.admin, s.path
	c, err := testkit.StartCaddy(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c.Running() {
			c.Kill()
		}
		if t.Failed() {
			t.Logf("caddy's output:\n%s", c.Out())
		}
	})
	return &caddyProc{Caddy: c, t: t}
}

// stop sends sig to Caddy and waits for it to exit.
func (p *caddyProc) stop(sig syscall.Signal) {
	p.t.Helper()
	if err := p.Stop(sig, 40*time.Second); err != nil {
		p.t.Fatal(err)
	}
}

// reload runs "caddy reload" with caddyfile as the new configuration.
func (p *caddyProc) reload(caddyfile string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Reload(ctx, caddyfile); err != nil {
		p.t.Fatal(err)
	}
}

// errors returns the lines of the github_webhook handler's log at level
// error: a deploy that failed, or anything else that went wrong.
func (p *caddyProc) errors() []testkit.LogEntry {
	var out []testkit.LogEntry
	for _, e := range p.Log() {
		if e.From("http.handlers.github_webhook") && e.Level == "error" {
			out = append(out, e)
		}
	}
	return out
}

// get fetches url and returns its status and body.
func get(url string) (int, string, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, string(b), err
}

// pageShows reports an error unless url answers 200 with want in its body.
func pageShows(url, want string) error {
	code, body, err := get(url)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("GET %s: %d", url, code)
	}
	if !strings.Contains(body, want) {
		return fmt.Errorf("GET %s does not show %q:\n%s", url, want, body)
	}
	return nil
}

// waitUntil is testkit.WaitFor.
func waitUntil(t *testing.T, timeout time.Duration, what string, fact func() error) {
	t.Helper()
	testkit.WaitFor(t, timeout, what, fact)
}

// newRemote returns a remote holding the site testdata/sites/<site> on
// branch main, with one commit.
func newRemote(t *testing.T, site string) *testkit.Remote {
	t.Helper()
	r := testkit.NewRemote(t)
	r.CopyFrom(filepath.Join(root, "testdata", "sites", site))
	r.Commit("Initial commit", nil)
	return r
}

// fixture returns the GitHub payload testdata/github/<name>.
func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := testkit.Fixture(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pushPayload returns GitHub's push payload for a push of after onto before
// on branch main of repo.
func pushPayload(t *testing.T, repo, before, after string) []byte {
	t.Helper()
	b, err := testkit.PushPayload(testkit.Push{Repo: repo, Branch: "main", Before: before, After: after})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// deliver POSTs payload to url the way GitHub does, signed with key, and
// returns the answer's status and body.
func deliver(t *testing.T, url, key, event, id string, payload []byte) (int, string) {
	t.Helper()
	d := testkit.Delivery{Event: event, ID: id, Secret: key, Body: payload}
	code, body, err := d.Send(&http.Client{Timeout: 10 * time.Second}, url)
	if err != nil {
		t.Fatalf("delivery %s: %v", id, err)
	}
	return code, body
}

// processGone reports whether pid has exited (a zombie counts as gone).
func processGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command name, which is in parentheses.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] == 'Z' || s[i+2] == 'X'
	}
	return false
}

// readPID reads a process id that a build script wrote to a file.
func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var pid int
	if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d", &pid); err != nil || pid <= 1 {
		return 0, fmt.Errorf("%s holds %q, not a process id", path, b)
	}
	return pid, nil
}
