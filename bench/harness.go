package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// Names every scenario uses.
const (
	benchRepo   = "bench/site"
	benchBranch = "main"
	secretEnv   = "BENCH_WEBHOOK_SECRET"
	hookPath    = "/_github"
)

// run is one invocation of the harness: the temporary folder everything
// lives in, the Caddy binary built from this clone, and the report.
type run struct {
	short   bool
	verbose bool
	wrk     bool // use wrk as well as the Go client where it applies
	root    string
	modRoot string
	caddy   string
	secret  string
	rep     *report
}

func (r *run) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// baseEnv is the environment of every process the harness starts: HOME and
// XDG folders inside the run's folder, a git identity, and no user or system
// git configuration.
func (r *run) baseEnv() []string {
	home := filepath.Join(r.root, "home")
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "HOME", strings.HasPrefix(k, "XDG_"), strings.HasPrefix(k, "GIT_"), k == secretEnv:
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"HOME="+home,
		"XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		"XDG_DATA_HOME="+filepath.Join(home, ".local", "share"),
		"XDG_CACHE_HOME="+filepath.Join(home, ".cache"),
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL="+filepath.Join(home, ".gitconfig"),
		"GIT_AUTHOR_NAME=bench", "GIT_AUTHOR_EMAIL=bench@example.invalid",
		"GIT_COMMITTER_NAME=bench", "GIT_COMMITTER_EMAIL=bench@example.invalid",
		secretEnv+"="+r.secret,
	)
}

// buildCaddy builds ./cmd/caddy of this clone, or takes the binary that the
// end-to-end tests (or an earlier run) built from the same sources.
func (r *run) buildCaddy() error {
	bins, err := testkit.Binary(context.Background(), "./cmd/caddy")
	if err != nil {
		return err
	}
	r.caddy = bins[0]
	return nil
}

// freePort returns a TCP port on 127.0.0.1 that the kernel picked as free.
func freePort() (int, error) {
	ports, err := testkit.FreePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// ---- git ----

// siteRepo is a bare repository (the remote the deployer fetches from) and a
// working clone the harness commits and pushes from.
type siteRepo struct {
	r    *run
	bare string
	work string
}

func (r *run) newRepo(dir string) (*siteRepo, error) {
	s := &siteRepo{r: r, bare: filepath.Join(dir, "remote.git"), work: filepath.Join(dir, "work")}
	if _, err := s.git(dir, "init", "--quiet", "--bare", "-b", benchBranch, s.bare); err != nil {
		return nil, err
	}
	if _, err := s.git(dir, "init", "--quiet", "-b", benchBranch, s.work); err != nil {
		return nil, err
	}
	if _, err := s.git(s.work, "remote", "add", "origin", s.bare); err != nil {
		return nil, err
	}
	return s, nil
}

// url is the remote as the deployer sees it.
func (s *siteRepo) url() string { return "file://" + s.bare }

func (s *siteRepo) git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = s.r.baseEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// write writes files (paths relative to the work tree); a nil content
// removes the file.
func (s *siteRepo) write(files map[string][]byte) error {
	for name, b := range files {
		p := filepath.Join(s.work, name)
		if b == nil {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// commit writes files and commits everything, returning the new commit.
func (s *siteRepo) commit(msg string, files map[string][]byte) (string, error) {
	if err := s.write(files); err != nil {
		return "", err
	}
	if _, err := s.git(s.work, "add", "-A"); err != nil {
		return "", err
	}
	if _, err := s.git(s.work, "commit", "--quiet", "--allow-empty", "-m", msg); err != nil {
		return "", err
	}
	return s.git(s.work, "rev-parse", "HEAD")
}

// push makes the work tree's HEAD the remote branch's tip.
func (s *siteRepo) push() error {
	_, err := s.git(s.work, "push", "--quiet", "--force", "origin", "HEAD:refs/heads/"+benchBranch)
	return err
}

// commitPush commits and pushes.
func (s *siteRepo) commitPush(msg string, files map[string][]byte) (string, error) {
	sha, err := s.commit(msg, files)
	if err != nil {
		return "", err
	}
	return sha, s.push()
}

// ---- Caddy ----

// testbed is what a scenario runs against: its folder, the site's
// repository, a Caddy deploying it, and the commit of the first deploy.
type testbed struct {
	dir   string
	repo  *siteRepo
	site  *site
	caddy *caddyProc
	first string
}

// newTestbed makes the folder name with a repository holding files, starts
// Caddy deploying it with the github_webhook subdirectives extra, and waits
// until the first commit is live. The caller stops tb.caddy.
func (r *run) newTestbed(name string, files map[string][]byte, extra []string) (*testbed, error) {
	dir, err := r.mkdir(name)
	if err != nil {
		return nil, err
	}
	repo, err := r.newRepo(dir)
	if err != nil {
		return nil, err
	}
	first, err := repo.commitPush("version 0", files)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &site{path: dir + "/site", port: port, extra: extra}
	p, err := r.startCaddy(dir, s, repo, "")
	if err != nil {
		return nil, err
	}
	if _, err := waitLive(context.Background(), s.path, first, 60*time.Second); err != nil {
		p.stop()
		return nil, err
	}
	return &testbed{dir: dir, repo: repo, site: s, caddy: p, first: first}, nil
}

// site is one deploy target served by Caddy, and its Caddyfile settings.
type site struct {
	path  string   // the deployer's folder
	port  int      // where Caddy serves path/current
	extra []string // more github_webhook subdirectives
	debug bool     // log at DEBUG: the deployer then logs wakes that find nothing to do
}

func (s *site) url(p string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", s.port, p) }

// caddyfile renders the configuration: the site with its github_webhook
// handler, and any extra site blocks.
func (r *run) caddyfile(adminPort int, logFile string, s *site, repo *siteRepo, more string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "{\n\tadmin 127.0.0.1:%d\n\tauto_https off\n\tpersist_config off\n", adminPort)
	level := "INFO"
	if s.debug {
		level = "DEBUG"
	}
	fmt.Fprintf(&b, "\tlog {\n\t\toutput file %s\n\t\tformat json\n\t\tlevel %s\n\t}\n}\n\n", logFile, level)
	fmt.Fprintf(&b, "http://127.0.0.1:%d {\n\troot * %s\n\tfile_server\n\n", s.port, filepath.Join(s.path, "current"))
	fmt.Fprintf(&b, "\tgithub_webhook %s {\n", hookPath)
	fmt.Fprintf(&b, "\t\trepo %s\n\t\tsecret {env.%s}\n\t\tpath %s\n\t\tbranch %s\n\t\tremote %s\n",
		benchRepo, secretEnv, s.path, benchBranch, repo.url())
	for _, line := range s.extra {
		fmt.Fprintf(&b, "\t\t%s\n", line)
	}
	b.WriteString("\t}\n}\n")
	if more != "" {
		b.WriteString("\n" + more + "\n")
	}
	return b.String()
}

// caddyProc is a running Caddy started by the harness.
type caddyProc struct {
	cmd     *exec.Cmd
	done    chan struct{}
	log     string // Caddy's JSON log
	stderr  string
	started time.Time
}

// startCaddy writes the Caddyfile into dir and runs Caddy on it. It returns
// once the site's port accepts connections, without sending it a request:
// callers check the first response themselves.
func (r *run) startCaddy(dir string, s *site, repo *siteRepo, more string) (*caddyProc, error) {
	adminPort, err := freePort()
	if err != nil {
		return nil, err
	}
	logFile := filepath.Join(dir, "caddy.log")
	cf := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cf, []byte(r.caddyfile(adminPort, logFile, s, repo, more)), 0o644); err != nil {
		return nil, err
	}
	stderr := filepath.Join(dir, "caddy.stderr")
	f, err := os.OpenFile(stderr, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(r.caddy, "run", "--config", cf, "--adapter", "caddyfile")
	cmd.Dir = dir
	cmd.Env = r.baseEnv()
	cmd.Stdout, cmd.Stderr = f, f
	// Should the harness die, Caddy dies with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting caddy: %w", err)
	}
	p := &caddyProc{cmd: cmd, done: make(chan struct{}), log: logFile, stderr: stderr, started: time.Now()}
	go func() { cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), time.Second)
		if err == nil {
			c.Close()
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("caddy exited at start: %s", tail(stderr, 2000))
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.kill()
			return nil, fmt.Errorf("caddy did not listen on %d within 20s: %s", s.port, tail(stderr, 2000))
		}
	}
}

func (p *caddyProc) pid() int { return p.cmd.Process.Pid }

// kill sends SIGKILL and waits for the process to be gone.
func (p *caddyProc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop asks Caddy to shut down gracefully, killing it after 15 s.
func (p *caddyProc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.kill()
	}
}

// mem returns VmHWM and VmRSS of the process in bytes.
func (p *caddyProc) mem() (hwm, rss int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid()))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) < 1 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmHWM":
			hwm = n << 10
		case "VmRSS":
			rss = n << 10
		}
	}
	return hwm, rss
}

// cpu returns the CPU time of the process itself and that of its children
// that have ended (git and build commands the deployer ran), from
// /proc/<pid>/stat.
func (p *caddyProc) cpu() (self, children time.Duration) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid()))
	if err != nil {
		return 0, 0
	}
	// Fields after the command name, which is in parentheses: utime, stime,
	// cutime and cstime are fields 14 to 17 of the line.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 15 {
		return 0, 0
	}
	tick := func(i int) time.Duration {
		n, _ := strconv.ParseInt(f[i], 10, 64)
		return time.Duration(n) * time.Second / 100 // USER_HZ
	}
	return tick(11) + tick(12), tick(13) + tick(14)
}

// cpuTimes is the machine's CPU time from /proc/stat: busy, and idle or
// waiting for I/O, summed over all cores.
type cpuTimes struct{ busy, idle time.Duration }

func machineCPU() cpuTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var t cpuTimes
	for i, x := range f[1:] {
		n, _ := strconv.ParseInt(x, 10, 64)
		d := time.Duration(n) * time.Second / 100
		switch i {
		case 3, 4: // idle, iowait
			t.idle += d
		case 0, 1, 2, 5, 6, 7: // user, nice, system, irq, softirq, steal
			t.busy += d
		}
	}
	return t
}

func (t cpuTimes) sub(o cpuTimes) cpuTimes { return cpuTimes{t.busy - o.busy, t.idle - o.idle} }
func (t cpuTimes) add(o cpuTimes) cpuTimes { return cpuTimes{t.busy + o.busy, t.idle + o.idle} }

// idlePct is the share of the machine's CPU time that was idle.
func (t cpuTimes) idlePct() float64 { return 100 * t.idle.Seconds() / (t.busy + t.idle).Seconds() }

// logEntry is one line of Caddy's JSON log.
type logEntry map[string]any

func (e logEntry) str(k string) string { s, _ := e[k].(string); return s }

// logSize is a mark in the log: entries after it are read with logSince.
func logSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logSince returns the log's entries written after mark.
func logSince(path string, mark int64) []logEntry {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	f.Seek(mark, io.SeekStart)
	var out []logEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e logEntry
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			out = append(out, e)
		}
	}
	return out
}

// withMsg returns the entries whose message is msg.
func withMsg(entries []logEntry, msg string) []logEntry {
	var out []logEntry
	for _, e := range entries {
		if e.str("msg") == msg {
			out = append(out, e)
		}
	}
	return out
}

// tail returns the last n bytes of a file.
func tail(path string, n int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if int64(len(b)) > n {
		b = b[int64(len(b))-n:]
	}
	return strings.TrimSpace(string(b))
}

// ---- the deploy folder ----

// liveRelease returns the release path/current points to, or "".
func liveRelease(path string) string {
	t, err := os.Readlink(filepath.Join(path, "current"))
	if err != nil {
		return ""
	}
	parts := strings.Split(filepath.ToSlash(filepath.Clean(t)), "/")
	if len(parts) < 2 || parts[0] != "releases" {
		return ""
	}
	return parts[1]
}

// isLive reports whether the live release is of commit: release names carry
// the commit's first 12 hex digits (DESIGN.md, "Deploys", step 2).
func isLive(path, commit string) bool {
	return strings.Contains(liveRelease(path), short(commit))
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}

// waitLive polls path/current until commit is live.
func waitLive(ctx context.Context, path, commit string, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	for !isLive(path, commit) {
		if time.Now().After(deadline) {
			return time.Since(start), fmt.Errorf("commit %s not live after %v (live: %q)", short(commit), timeout, liveRelease(path))
		}
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	return time.Since(start), nil
}

// deployState is the part of path/state.json the harness reads.
type deployState struct {
	Releases []struct {
		Name   string `json:"name"`
		Commit string `json:"commit"`
	} `json:"releases"`
	FailedCommit string `json:"failed_commit"`
	Building     *struct {
		Release string `json:"release"`
		PGID    int    `json:"pgid"`
	} `json:"building"`
}

func readState(path string) (deployState, error) {
	var st deployState
	b, err := os.ReadFile(filepath.Join(path, "state.json"))
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// ---- deliveries ----

// pushPayload returns GitHub's push delivery (testdata/github), edited to be
// a push of after onto the bench branch of the bench repository.
func pushPayload(before, after string) []byte {
	b, err := testkit.PushPayload(testkit.Push{Repo: benchRepo, Branch: benchBranch, Before: before, After: after})
	if err != nil {
		panic(err)
	}
	return b
}

// uuid returns a new delivery id.
func uuid() string { return testkit.DeliveryID() }

// deliveryClient sends deliveries; it keeps no connection open between them,
// like GitHub.
var deliveryClient = &http.Client{
	Timeout:   30 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

// delivery is the outcome of one delivery.
type delivery struct {
	status  int
	body    string
	elapsed time.Duration // until the response headers
	err     error
}

// deliver sends body as a push delivery signed with secret.
func deliver(url, secret string, body []byte) delivery {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return delivery{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", uuid())
	req.Header.Set("X-Hub-Signature-256", testkit.Sign(secret, body))
	req.Header.Set("User-Agent", "GitHub-Hookshot/bench")
	start := time.Now()
	resp, err := deliveryClient.Do(req)
	if err != nil {
		return delivery{err: err, elapsed: time.Since(start)}
	}
	elapsed := time.Since(start)
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	return delivery{status: resp.StatusCode, body: strings.TrimSpace(string(b)), elapsed: elapsed}
}

// push2xx sends a genuine delivery for a push from before to after and
// reports an error unless it is answered 202.
func (r *run) pushDelivery(s *site, before, after string) delivery {
	d := deliver(s.url(hookPath), r.secret, pushPayload(before, after))
	if d.err == nil && d.status != http.StatusAccepted {
		d.err = fmt.Errorf("delivery answered %d: %s", d.status, d.body)
	}
	return d
}

// ---- HTTP GETs ----

var getClient = &http.Client{
	Timeout: 10 * time.Second,
	Transport: &http.Transport{
		MaxIdleConnsPerHost: 256,
		DisableCompression:  true,
	},
}

// get returns the status and body of a GET.
func get(url string) (int, []byte, error) {
	resp, err := getClient.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}
