package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
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

func newRun(short, verbose, useWrk bool) (*run, error) {
	modRoot, err := testkit.Root()
	if err != nil {
		return nil, err
	}
	root, err := os.MkdirTemp("", "caddy-webhook-bench-")
	if err != nil {
		return nil, err
	}
	r := &run{short: short, verbose: verbose, wrk: useWrk, root: root, modRoot: modRoot,
		secret: "bench-" + testkit.DeliveryID(), rep: &report{short: short}}
	if err := os.MkdirAll(filepath.Join(root, "home"), 0o755); err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("wrk"); useWrk && err != nil {
		r.logf("wrk not found: the serving scenario uses the Go client only")
		r.wrk = false
	}
	r.logf("building ./cmd/caddy")
	bins, err := testkit.Binary(context.Background(), "./cmd/caddy")
	if err != nil {
		os.RemoveAll(root)
		return nil, err
	}
	r.caddy = bins[0]
	return r, nil
}

func (r *run) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// mkdir creates a folder under the run's root.
func (r *run) mkdir(name string) (string, error) {
	dir := filepath.Join(r.root, name)
	return dir, os.MkdirAll(dir, 0o755)
}

// baseEnv is the environment of every process the harness starts: HOME and
// XDG folders inside the run's folder, no user or system git configuration,
// and the webhook secret.
func (r *run) baseEnv() []string {
	home := filepath.Join(r.root, "home")
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "HOME" || strings.HasPrefix(k, "XDG_") || strings.HasPrefix(k, "GIT_") || k == secretEnv {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home,
		"XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		"XDG_DATA_HOME="+filepath.Join(home, ".local", "share"),
		"XDG_CACHE_HOME="+filepath.Join(home, ".cache"),
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+os.DevNull,
		secretEnv+"="+r.secret,
	)
}

// testbed is what a scenario runs against: its folder, the site's
// repository, a Caddy deploying it, and the commit of the first deploy.
type testbed struct {
	dir   string
	repo  *testkit.Repo
	site  *site
	caddy *caddyProc
	first string
}

// newTestbed makes the folder name with a repository holding files, starts
// Caddy deploying it into path (name/site when empty) with the
// github_webhook subdirectives extra, and waits until the first commit is
// live. The caller stops tb.caddy.
func (r *run) newTestbed(name, path string, files map[string]string, extra []string) (*testbed, error) {
	return r.newTestbedWithin(name, path, files, extra, time.Minute)
}

// newTestbedWithin is newTestbed for a first deploy that may take up to
// timeout (a slow build).
func (r *run) newTestbedWithin(name, path string, files map[string]string, extra []string, timeout time.Duration) (*testbed, error) {
	dir, err := r.mkdir(name)
	if err != nil {
		return nil, err
	}
	repo, err := testkit.NewRepo(dir, benchBranch)
	if err != nil {
		return nil, err
	}
	first, err := repo.Commit("version 0", files)
	if err != nil {
		return nil, err
	}
	ports, err := testkit.FreePorts(1)
	if err != nil {
		return nil, err
	}
	if path == "" {
		path = filepath.Join(dir, "site")
	}
	s := &site{path: path, port: ports[0], remote: "file://" + repo.Bare, extra: extra}
	p, err := r.startCaddy(dir, s)
	if err != nil {
		return nil, err
	}
	if _, err := waitLive(s.path, first, timeout); err != nil {
		p.stop()
		return nil, err
	}
	return &testbed{dir: dir, repo: repo, site: s, caddy: p, first: first}, nil
}

// site is one deploy target served by Caddy, and its Caddyfile settings.
type site struct {
	path   string   // the deployer's folder
	port   int      // where Caddy serves path/current
	remote string   // the repository's URL
	extra  []string // more github_webhook subdirectives
	env    []string // more environment for Caddy
	more   string   // more site blocks, after the site's
}

func (s *site) url(p string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", s.port, p) }

// caddyfile renders the configuration of Caddy serving s, with its admin
// endpoint at admin.
func (s *site) caddyfile(admin, logFile string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "{\n\tadmin %s\n\tauto_https off\n\tpersist_config off\n", admin)
	fmt.Fprintf(&b, "\tlog {\n\t\toutput file %s\n\t\tformat json\n\t}\n}\n\n", logFile)
	fmt.Fprintf(&b, "http://127.0.0.1:%d {\n\troot * %s\n\tfile_server\n\n", s.port, filepath.Join(s.path, "current"))
	fmt.Fprintf(&b, "\tgithub_webhook %s {\n\t\trepo %s\n\t\tsecret {env.%s}\n\t\tpath %s\n\t\tbranch %s\n\t\tremote %s\n",
		hookPath, benchRepo, secretEnv, s.path, benchBranch, s.remote)
	for _, line := range s.extra {
		fmt.Fprintf(&b, "\t\t%s\n", line)
	}
	b.WriteString("\t}\n}\n")
	b.WriteString(s.more)
	return b.String()
}

// caddyProc is a running Caddy started by the harness.
type caddyProc struct {
	*testkit.Caddy
	path string // the deployer's folder, as the admin API names it
}

// startCaddy writes s's Caddyfile into dir and runs Caddy on it. It returns
// once the site's port accepts connections, without sending it a request:
// callers check the first response themselves. Connections that the
// harness kept open to an earlier Caddy are closed first: one to the same
// port (a restart, or a port the kernel picked again) would meet a reset.
func (r *run) startCaddy(dir string, s *site) (*caddyProc, error) {
	getClient.CloseIdleConnections()
	return r.launch(dir, s, "", s.env, []string{fmt.Sprintf("127.0.0.1:%d", s.port)})
}

// launch writes s's Caddyfile into dir, with global (one line of global
// options, or "") added to its global block, runs Caddy on it with the
// run's environment plus env (later entries win), and returns once its
// admin endpoint answers and the addresses ready accept connections.
func (r *run) launch(dir string, s *site, global string, env []string, ready []string) (*caddyProc, error) {
	c, err := testkit.StartCaddy(context.Background(), testkit.CaddyOptions{
		Binary: r.caddy,
		Dir:    dir,
		Config: func(admin string) string {
			config := s.caddyfile(admin, filepath.Join(dir, "caddy.log"))
			if global != "" {
				config = strings.Replace(config, "{\n", "{\n\t"+global+"\n", 1)
			}
			return config
		},
		Env:    append(r.baseEnv(), env...),
		Expect: s.path,
		Ready:  ready,
		Wait:   20 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	return &caddyProc{Caddy: c, path: s.path}, nil
}

func (p *caddyProc) pid() int { return p.PID() }

// kill sends SIGKILL and waits for the process to be gone.
func (p *caddyProc) kill() { p.Kill() }

// stop asks Caddy to shut down gracefully, killing it after 15 s.
func (p *caddyProc) stop() { p.Stop(syscall.SIGTERM, 15*time.Second) }

// status returns the deployer's status from Caddy's admin API.
func (p *caddyProc) status() (deployer.Status, error) {
	resp, err := http.Get("http://" + p.Admin + "/github_webhook/deploys")
	if err != nil {
		return deployer.Status{}, fmt.Errorf("admin API: %w", err)
	}
	defer resp.Body.Close()
	var list []deployer.Status
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return deployer.Status{}, fmt.Errorf("admin API: decoding the status: %w", err)
	}
	for _, st := range list {
		if st.Path == p.path {
			return st, nil
		}
	}
	return deployer.Status{}, fmt.Errorf("admin API: no target %s", p.path)
}

// waitStatus polls the status until ok says it holds, for at most timeout.
func (p *caddyProc) waitStatus(what string, timeout time.Duration, ok func(deployer.Status) bool) (deployer.Status, error) {
	var st deployer.Status
	var err error
	deadline := time.Now().Add(timeout)
	for {
		if st, err = p.status(); err == nil && ok(st) {
			return st, nil
		}
		if time.Now().After(deadline) {
			return st, fmt.Errorf("waited %v for %s: %v (status %+v)", timeout, what, err, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metric returns the value of this target's series of Caddy's /metrics
// named name with the labels given (their values without quotes), or 0 when
// there is none.
func (p *caddyProc) metric(name string, labels map[string]string) (float64, error) {
	resp, err := http.Get("http://" + p.Admin + "/metrics")
	if err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
	}
	want := map[string]string{"path": p.path}
	for k, v := range labels {
		want[k] = v
	}
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, name+"{")
		if !ok {
			continue
		}
		set, value, _ := strings.Cut(rest, "} ")
		found := 0
		for _, kv := range strings.Split(set, ",") {
			if k, v, _ := strings.Cut(kv, "="); want[k] != "" && `"`+want[k]+`"` == v {
				found++
			}
		}
		if found == len(want) {
			return strconv.ParseFloat(strings.TrimSpace(value), 64)
		}
	}
	return 0, nil
}

// liveRelease returns the release path/current points to, or "".
func liveRelease(path string) string {
	t, err := os.Readlink(filepath.Join(path, "current"))
	if err != nil {
		return ""
	}
	// releases/<name>, or releases/<name>/<publish>
	parts := strings.Split(filepath.ToSlash(filepath.Clean(t)), "/")
	if len(parts) < 2 || parts[0] != "releases" {
		return ""
	}
	return parts[1]
}

// isLive reports whether the live release is of commit: release names end
// with the commit's first 12 hex digits (DESIGN.md, "Deploys", step 2).
func isLive(path, commit string) bool {
	return len(commit) >= 12 && strings.HasSuffix(liveRelease(path), "-"+commit[:12])
}

// waitLive polls path/current until commit is live, and returns how long
// that took.
func waitLive(path, commit string, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	for !isLive(path, commit) {
		if time.Since(start) > timeout {
			return time.Since(start), fmt.Errorf("commit %.12s not live after %v (live: %q)", commit, timeout, liveRelease(path))
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start), nil
}

// deliveryClient sends deliveries; it keeps no connection open between them,
// like GitHub.
var deliveryClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// delivery is the outcome of one delivery.
type delivery struct {
	status  int
	body    string
	elapsed time.Duration // until the response headers
	err     error
}

// deliver sends payload to s as a push delivery signed with the run's secret.
func (r *run) deliver(s *site, payload []byte) delivery {
	req, err := testkit.Delivery{Event: "push", Secret: r.secret, Body: payload}.Request(s.url(hookPath))
	if err != nil {
		return delivery{err: err}
	}
	return send(deliveryClient, req)
}

// send sends req with c and reads the handler's answer, timed.
func send(c *http.Client, req *http.Request) delivery {
	start := time.Now()
	resp, err := c.Do(req)
	elapsed := time.Since(start)
	if err != nil {
		return delivery{err: err, elapsed: elapsed}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return delivery{status: resp.StatusCode, body: strings.TrimSpace(string(b)), elapsed: elapsed}
}

// push sends a genuine delivery for a push from before to after; an answer
// other than 202 is an error.
func (r *run) push(s *site, before, after string) delivery {
	d := r.deliver(s, pushPayload(before, after))
	if d.err == nil && d.status != http.StatusAccepted {
		d.err = fmt.Errorf("delivery answered %d: %s", d.status, d.body)
	}
	return d
}

// pushPayload returns GitHub's push payload for a push from before to after
// on the bench branch of the bench repository.
func pushPayload(before, after string) []byte {
	b, err := testkit.PushPayload(testkit.Push{Repo: benchRepo, Branch: benchBranch, Before: before, After: after})
	if err != nil {
		panic(err) // the fixture is part of the clone
	}
	return b
}

var getClient = &http.Client{Timeout: 10 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}}

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
