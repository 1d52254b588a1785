package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
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
)

// adminAddr is the admin endpoint of every Caddy these tests start, one at a
// time. The caddytest harness of other packages uses 2999.
const adminAddr = "127.0.0.1:2399"

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
	if root, err = filepath.Abs(".."); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	bin, err := os.MkdirTemp("", "e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(bin)

	// The README's build command, for both binaries at once.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin+string(filepath.Separator), "./cmd/caddy", "./cmd/demo")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/caddy ./cmd/demo: %v\n%s", err, out)
		return 1
	}
	caddyBin = filepath.Join(bin, "caddy")
	demoBin = filepath.Join(bin, "demo")
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

// caddyProc is a running Caddy binary.
type caddyProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	out    *syncBuffer // its standard output and error
	done   chan struct{}
	err    error // set when done is closed
	config string
	env    []string
}

// startCaddy writes caddyfile into a temporary folder and runs
// "caddy run --config <it>" with env, until the test ends. It returns once
// the admin endpoint answers.
func startCaddy(t *testing.T, caddyfile string, env []string) *caddyProc {
	t.Helper()
	config := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(config, []byte(caddyfile), 0o644); err != nil {
		t.Fatal(err)
	}
	return runCaddy(t, config, env)
}

// runCaddy runs "caddy run --config config" with env; see startCaddy.
func runCaddy(t *testing.T, config string, env []string) *caddyProc {
	t.Helper()
	p := &caddyProc{t: t, out: new(syncBuffer), done: make(chan struct{}), config: config, env: env}
	p.cmd = exec.Command(caddyBin, "run", "--config", config)
	p.cmd.Env = env
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("caddy's output:\n%s", p.out.String())
		}
	})
	waitUntil(t, 30*time.Second, "caddy's admin endpoint to answer", func() error {
		select {
		case <-p.done:
			t.Fatalf("caddy exited at start: %v\n%s", p.err, p.out.String())
		default:
		}
		_, _, err := get("http://" + adminAddr + "/config/")
		return err
	})
	return p
}

// stop sends sig to Caddy and waits for it to exit.
func (p *caddyProc) stop(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(40 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		p.t.Fatalf("caddy did not exit within 40s of %v", sig)
	}
}

// reload runs "caddy reload" with caddyfile as the new configuration.
func (p *caddyProc) reload(caddyfile string) {
	p.t.Helper()
	config := filepath.Join(p.t.TempDir(), "Caddyfile")
	if err := os.WriteFile(config, []byte(caddyfile), 0o644); err != nil {
		p.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, caddyBin, "reload", "--config", config, "--address", adminAddr)
	cmd.Env = p.env
	if out, err := cmd.CombinedOutput(); err != nil {
		p.t.Fatalf("caddy reload: %v\n%s", err, out)
	}
}

// logEntry is a line of Caddy's JSON log.
type logEntry struct {
	Level   string `json:"level"`
	Logger  string `json:"logger"`
	Msg     string `json:"msg"`
	Commit  string `json:"commit"`
	Release string `json:"release"`
	Reason  string `json:"reason"`
	Error   string `json:"error"`
}

// logs returns the lines of the github_webhook handler's log with message msg.
func (p *caddyProc) logs(msg string) []logEntry {
	var out []logEntry
	sc := bufio.NewScanner(strings.NewReader(p.out.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e logEntry
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		if strings.HasPrefix(e.Logger, "http.handlers.github_webhook") && e.Msg == msg {
			out = append(out, e)
		}
	}
	return out
}

// countLogs returns how many of the handler's log lines have message msg
// and, unless commit is empty, name commit.
func (p *caddyProc) countLogs(msg, commit string) int {
	n := 0
	for _, e := range p.logs(msg) {
		if commit == "" || e.Commit == commit {
			n++
		}
	}
	return n
}

// status returns the deploy status of path from the admin API.
func status(t *testing.T, path string) deployer.Status {
	t.Helper()
	code, body, err := get("http://" + adminAddr + "/github_webhook/deploys")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /github_webhook/deploys: %d %v %s", code, err, body)
	}
	var list []deployer.Status
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatalf("decoding the deploys: %v\n%s", err, body)
	}
	for _, s := range list {
		if s.Path == path {
			return s
		}
	}
	t.Fatalf("no target %s in %s", path, body)
	return deployer.Status{}
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

// waitUntil calls f every 50ms until it returns nil, and fails the test if
// that takes longer than timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s: %v", timeout, what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// remote is a site's git history: a working copy that commits and pushes to
// a bare repository, the remote that Caddy deploys from.
type remote struct {
	t    *testing.T
	work string
	bare string
	env  []string
}

// newRemote creates a remote holding the site testdata/sites/<site> on
// branch main, with one commit.
func newRemote(t *testing.T, site string) *remote {
	t.Helper()
	dir := t.TempDir()
	r := &remote{
		t: t, work: filepath.Join(dir, "work"), bare: filepath.Join(dir, "site.git"),
		env: append(os.Environ(),
			"GIT_AUTHOR_NAME=E2E", "GIT_AUTHOR_EMAIL=e2e@example.com",
			"GIT_COMMITTER_NAME=E2E", "GIT_COMMITTER_EMAIL=e2e@example.com",
			"GIT_CONFIG_NOSYSTEM=1", "HOME="+dir),
	}
	copyTree(t, filepath.Join(root, "testdata", "sites", site), r.work)
	r.git(dir, "init", "-q", "--bare", "-b", "main", r.bare)
	r.git(r.work, "init", "-q", "-b", "main")
	r.git(r.work, "remote", "add", "origin", r.bare)
	r.commit("Initial commit")
	return r
}

func (r *remote) git(dir string, args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = r.env
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return strings.TrimSpace(string(out))
}

// write writes a file of the working copy.
func (r *remote) write(name, content string) {
	r.t.Helper()
	p := filepath.Join(r.work, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// remove removes a file of the working copy.
func (r *remote) remove(name string) {
	r.t.Helper()
	if err := os.Remove(filepath.Join(r.work, name)); err != nil {
		r.t.Fatal(err)
	}
}

// commit commits everything in the working copy, pushes it, and returns the
// new tip.
func (r *remote) commit(msg string) string {
	r.t.Helper()
	r.git(r.work, "add", "-A")
	r.git(r.work, "commit", "-q", "--allow-empty", "-m", msg)
	r.git(r.work, "push", "-q", "origin", "main")
	return r.git(r.work, "rev-parse", "HEAD")
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// fixture returns the payload testdata/github/<name>, edited by edit.
func fixture(t *testing.T, name string, edit func(p map[string]any)) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "testdata", "github", name))
	if err != nil {
		t.Fatal(err)
	}
	var p map[string]any
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(p)
	}
	out, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// pushPayload returns GitHub's push payload (testdata/github/push-branch.json)
// for a push of after onto before on branch main of repo.
func pushPayload(t *testing.T, repo, before, after string) []byte {
	return fixture(t, "push-branch.json", func(p map[string]any) {
		p["ref"] = "refs/heads/main"
		p["before"] = before
		p["after"] = after
		r := p["repository"].(map[string]any)
		r["full_name"] = repo
		r["name"] = repo[strings.IndexByte(repo, '/')+1:]
		r["default_branch"] = "main"
		r["master_branch"] = "main"
		if c, ok := p["head_commit"].(map[string]any); ok {
			c["id"] = after
		}
	})
}

// deliver POSTs payload to url the way GitHub does, signed with key, and
// returns the answer's status and body.
func deliver(t *testing.T, url, key, event, id string, payload []byte) (int, string) {
	t.Helper()
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write(payload)
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/e2e")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", id)
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("delivery %s: %v", id, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, strings.TrimSpace(string(body))
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

// siteCaddyfile serves path/current on port and deploys the repository
// octocat/<repo> from remote there, with the github_webhook subdirectives
// more (one per line) after the common ones.
func siteCaddyfile(port int, path, remote, repo string, more ...string) string {
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
`, adminAddr, port, path, repo, path, remote, strings.Join(more, "\n\t\t"))
}
