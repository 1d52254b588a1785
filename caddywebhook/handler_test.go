package caddywebhook

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// The in-process Caddy of caddytest listens on ports the kernel picked when
// the test binary started (see TestMain and startCaddy), so that two test
// runs on one machine, and other packages' tests, do not meet.
var (
	adminPort int    // Caddy's admin endpoint, on localhost
	httpPort  int    // the http_port of the tests' Caddyfiles
	httpsPort int    // their https_port, which no site uses
	adminAddr string // "localhost:<adminPort>"
	siteURL   string // the tests' site, "http://localhost:<httpPort>"; also its address in the Caddyfile
	hookURL   string // the github_webhook handler of the site

	// emptyConfig is loaded when a test ends, so that its deployers stop
	// before its folder is removed.
	emptyConfig string
)

// pickPorts sets the ports and addresses above to ports the kernel picked.
func pickPorts() error {
	ports, err := testkit.FreePorts(3)
	if err != nil {
		return err
	}
	adminPort, httpPort, httpsPort = ports[0], ports[1], ports[2]
	adminAddr = fmt.Sprintf("localhost:%d", adminPort)
	siteURL = fmt.Sprintf("http://localhost:%d", httpPort)
	hookURL = siteURL + "/_github"
	emptyConfig = "{\n\tadmin " + adminAddr + "\n}\n"
	return nil
}

// siteAddr is the host and port of the tests' site, for raw connections.
func siteAddr() string { return fmt.Sprintf("localhost:%d", httpPort) }

// TestMain keeps Caddy and git away from the user's configuration: Caddy's
// autosave and data go to a temporary folder, and git reads no global or
// system config. Caddy reads XDG_CONFIG_HOME when its package initialises,
// before TestMain runs, so the test binary executes itself again with the
// environment set.
func TestMain(m *testing.M) {
	if home := os.Getenv("CWH_TEST_HOME"); home != "" {
		if err := pickPorts(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		code := m.Run()
		// Fuzz workers inherit the variable; only the process that made
		// the folder (exec keeps its pid) removes it.
		if os.Getenv("CWH_TEST_HOME_PID") == strconv.Itoa(os.Getpid()) {
			os.RemoveAll(home)
		}
		os.Exit(code)
	}
	home, err := os.MkdirTemp("", "caddywebhook-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	env := append(os.Environ(),
		"CWH_TEST_HOME="+home,
		"CWH_TEST_HOME_PID="+strconv.Itoa(os.Getpid()),
		"XDG_CONFIG_HOME="+filepath.Join(home, "config"),
		"XDG_DATA_HOME="+filepath.Join(home, "data"),
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL="+os.DevNull,
		"GIT_AUTHOR_NAME=Test Author",
		"GIT_AUTHOR_EMAIL=author@example.com",
		"GIT_COMMITTER_NAME=Test Committer",
		"GIT_COMMITTER_EMAIL=committer@example.com",
	)
	exe, err := os.Executable()
	if err == nil {
		err = syscall.Exec(exe, os.Args, env)
	}
	fmt.Fprintln(os.Stderr, "executing the test binary again:", err)
	os.Exit(1)
}

// testSite is what one integration test runs: a folder, a site repository,
// and the Caddyfile that deploys it.
type testSite struct {
	t    *testing.T
	dir  string
	path string // the deployer's folder
	repo *testkit.Remote
	log  string // Caddy's log file
}

func newTestSite(t *testing.T) *testSite {
	dir := t.TempDir()
	t.Setenv("CWH_TEST_SECRET", testSecret)
	t.Setenv("CWH_TEST_OLD_SECRET", testOldSecret)
	t.Setenv("CWH_TEST_TOKEN", testToken)
	return &testSite{t: t, dir: dir, path: filepath.Join(dir, "site"), repo: testkit.NewRemoteOn(t, testBranch), log: filepath.Join(dir, "caddy.log")}
}

const testToken = "ghp_testtokenthatmustneverleak0123456789"

// caddyfile returns a Caddyfile serving the site, with the handler at
// /_github; extra goes into the handler's block.
func (s *testSite) caddyfile(extra string) string {
	return fmt.Sprintf(`{
	admin %s
	http_port %d
	https_port %d
	grace_period 1s
	log {
		output file %s
		format json
		level DEBUG
	}
}

%s {
	root * %s/current
	file_server

	github_webhook /_github {
		repo     %s
		secret   {env.CWH_TEST_SECRET}
		secret   {env.CWH_TEST_OLD_SECRET}
		token    {env.CWH_TEST_TOKEN}
		path     %s
		remote   %s
		branch   %s
		max_body 64KiB
		%s
	}
}
`, adminAddr, httpPort, httpsPort, s.log, siteURL, s.path, testRepo, s.path, s.repo.Bare, testBranch, extra)
}

// start loads config into the in-process Caddy (starting it if needed) and
// unloads it when the test ends.
func (s *testSite) start(config string) *caddytest.Tester {
	startCaddy(s.t)
	tester := caddytest.NewTester(s.t).WithDefaultOverrides(caddytest.Config{AdminPort: adminPort})
	tester.InitServer(config, "caddyfile")
	if s.t.Failed() {
		s.t.FailNow()
	}
	s.t.Cleanup(func() {
		if err := loadConfig(emptyConfig); err != nil {
			s.t.Errorf("unloading the test config: %v", err)
		}
	})
	return tester
}

var (
	caddyStarted sync.Once
	caddyErr     error
)

// startCaddy starts Caddy in this process with its admin endpoint on
// adminAddr, once, before caddytest looks for one there: caddytest uses
// whatever Caddy answers on its admin port, and this way that Caddy is this
// process's. Should another process have taken the port since the kernel
// picked it, Caddy cannot listen and the test fails here.
func startCaddy(t *testing.T) {
	t.Helper()
	caddyStarted.Do(func() {
		caddyErr = caddy.Load([]byte(`{"admin":{"listen":"`+adminAddr+`"}}`), true)
	})
	if caddyErr != nil {
		t.Fatalf("starting Caddy with its admin endpoint on %s: %v", adminAddr, caddyErr)
	}
}

// loadConfig loads a Caddyfile through the admin API.
func loadConfig(config string) error {
	req, _ := http.NewRequest(http.MethodPost, "http://"+adminAddr+"/load", strings.NewReader(config))
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, body)
	}
	return nil
}

// deployerOf returns the deployer of path in the pool, or nil.
func deployerOf(path string) *deployer.Deployer {
	var d *deployer.Deployer
	targets.Range(func(key, value any) bool {
		if key == path {
			d = value.(*target).d
		}
		return true
	})
	return d
}

// startLive commits a first version of the site, loads config and waits
// until that commit is live; it returns the commit.
func (s *testSite) startLive(config string) string {
	s.t.Helper()
	first := s.repo.Commit("first version", map[string]string{"index.html": "first"})
	s.start(config)
	s.waitLive(first)
	return first
}

// status returns the status of the site's deployer.
func (s *testSite) status() deployer.Status {
	s.t.Helper()
	d := deployerOf(s.path)
	if d == nil {
		// Caddy is in this process (startCaddy), and the test loaded this
		// configuration: its deployer must be here.
		s.t.Fatalf("no deployer for %s in this process: is another process answering on %s?", s.path, adminAddr)
	}
	return d.Status()
}

// waitLive waits until commit is live.
func (s *testSite) waitLive(commit string) deployer.Status {
	s.t.Helper()
	var st deployer.Status
	testkit.WaitFor(s.t, time.Minute, "commit "+commit+" to go live", func() error {
		if st = s.status(); st.Live == nil || st.Live.Commit != commit {
			return fmt.Errorf("live %+v, last %+v", st.Live, st.Last)
		}
		return nil
	})
	return st
}

// looks returns how many wakes the site's deployer has handled.
func (s *testSite) looks() uint64 {
	s.t.Helper()
	if c := s.status().Checked; c != nil {
		return c.Count
	}
	return 0
}

// waitLook waits until the deployer has handled a wake after its look
// numbered after, and returns the wake's look, which must be the next one,
// for reason and with outcome: a test that wakes the deployer knows what
// else can (no poll, no other request).
func (s *testSite) waitLook(after uint64, reason deployer.Reason, outcome string) deployer.Checked {
	s.t.Helper()
	var c deployer.Checked
	testkit.WaitFor(s.t, time.Minute, fmt.Sprintf("a %s wake to be handled", reason), func() error {
		if st := s.status(); st.Checked != nil && st.Checked.Count > after {
			c = *st.Checked
			return nil
		}
		return fmt.Errorf("the deployer handled %d wakes", after)
	})
	if c.Count != after+1 || c.Reason != reason || c.Outcome != outcome {
		s.t.Fatalf("look %d after %d: %s, %s (%s), want look %d: %s, %s", c.Count, after, c.Reason, c.Outcome, c.Detail, after+1, reason, outcome)
	}
	return c
}

// get returns the body of a page of the site.
func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, body)
	}
	return string(body)
}

// send sends the delivery of c to the handler and returns the answer.
func send(t *testing.T, c deliveryCase) (int, http.Header, []byte) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(c.request(t, hookURL))
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, body
}

// pushDelivery sends GitHub's push to the deployed branch, signed with
// secret, and checks that it is answered 202 queued.
func pushDelivery(t *testing.T, secret string) {
	t.Helper()
	c := pushCase()
	c.body = fixture(t, "push-branch.json")
	c.signWith = secret
	status, header, body := send(t, c)
	c.check(t, status, header, body)
}

// pushCase is the request table's push to the deployed branch.
func pushCase() deliveryCase {
	return deliveryCase{name: "push", event: "push", signWith: testSecret, status: 202, result: "queued", wakes: 1}
}

// TestDeliveriesThroughCaddy sends the whole request table to a Caddy whose
// handler deploys from a local bare repository: every answer is as the table
// says, nothing but a push to the branch deploys, and that push does.
func TestDeliveriesThroughCaddy(t *testing.T) {
	s := newTestSite(t)
	first := s.repo.Commit("test commit", map[string]string{"index.html": "first"})
	s.start(s.caddyfile(""))

	s.waitLive(first) // the deploy at start-up
	if got := get(t, siteURL+"/index.html"); got != "first" {
		t.Fatalf("site serves %q, want first", got)
	}
	startup := s.waitLook(0, deployer.ReasonStartup, deployer.OutcomeDeployed)

	cases := deliveryCases(t)
	for _, c := range cases {
		if c.wakes > 0 {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			status, header, body := send(t, c)
			c.check(t, status, header, body)
		})
	}
	// None of those woke the deployer. A delivery wakes it before it is
	// answered, so a wake by one of them would now be pending or handled:
	// the manual wake that follows would then be merged into it (the first
	// of two explicit wakes keeps its reason) or be handled second.
	if code, body := adminDo(t, http.MethodPost, "/github_webhook/deploy", `{"path": "`+s.path+`"}`, nil); code != http.StatusAccepted {
		t.Fatalf("POST deploy: %d %s", code, body)
	}
	s.waitLook(startup.Count, deployer.ReasonManual, deployer.OutcomeLive)

	second := s.repo.Commit("test commit", map[string]string{"index.html": "second"})

	for _, c := range cases {
		if c.wakes == 0 {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			status, header, body := send(t, c)
			c.check(t, status, header, body)
		})
	}
	s.waitLive(second)
	if got := get(t, siteURL+"/index.html"); got != "second" {
		t.Errorf("site serves %q, want second", got)
	}
}

// TestReloadMidBuild reloads the configuration through the admin API while a
// slow build runs: the build goes on and goes live, once, with the settings
// it started with; the next deploy uses the new settings.
func TestReloadMidBuild(t *testing.T) {
	s := newTestSite(t)
	builds := filepath.Join(s.dir, "builds.log")
	command := func(name, sleep string) string {
		return fmt.Sprintf("command sh -c `sleep %s && echo %s:$DEPLOY_COMMIT >> %s && echo %s > built.txt`",
			sleep, name, builds, name)
	}
	c1 := s.startLive(s.caddyfile(command("A", "3")))
	d := deployerOf(s.path)

	c2 := s.repo.Commit("test commit", map[string]string{"index.html": "two"})
	pushDelivery(t, testSecret)
	// The answer came before the build ended: the old commit is still live.
	if st := s.status(); st.Live.Commit != c1 {
		t.Fatalf("answered after the deploy of %s", st.Live.Commit)
	}
	testkit.WaitFor(t, time.Minute, "the build of the second commit", func() error {
		if st := s.status(); st.Running == nil || st.Running.Commit != c2 {
			return fmt.Errorf("running %+v", st.Running)
		}
		return nil
	})

	if err := loadConfig(s.caddyfile(command("B", "0") + "\n keep 5")); err != nil {
		t.Fatalf("reloading: %v", err)
	}
	if deployerOf(s.path) != d {
		t.Fatal("the reload replaced the deployer")
	}
	if st := s.status(); st.Running == nil || st.Running.Commit != c2 {
		t.Fatalf("the reload interrupted the build: %+v", st)
	}

	st := s.waitLive(c2)
	if got := get(t, siteURL+"/built.txt"); got != "A\n" {
		t.Errorf("built.txt = %q, want the build of the settings it started with", got)
	}
	if n := releasesOf(st, c2); n != 1 {
		t.Errorf("%d releases of %s, want 1: %v", n, c2, st.Releases)
	}

	c3 := s.repo.Commit("test commit", map[string]string{"index.html": "three"})
	pushDelivery(t, testSecret)
	s.waitLive(c3)
	if got := get(t, siteURL+"/built.txt"); got != "B\n" {
		t.Errorf("built.txt = %q after the reload, want the new settings' build", got)
	}

	log, err := os.ReadFile(builds)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("A:%s\nA:%s\nB:%s\n", c1, c2, c3); string(log) != want {
		t.Errorf("builds:\n%s\nwant each commit built once:\n%s", log, want)
	}
}

// releasesOf counts the releases of commit; a release's name ends with the
// start of its commit.
func releasesOf(st deployer.Status, commit string) int {
	n := 0
	for _, r := range st.Releases {
		if i := strings.LastIndexByte(r, '-'); i >= 0 && strings.HasPrefix(commit, r[i+1:]) {
			n++
		}
	}
	return n
}

// TestSecretsStayOut: neither the secret nor the token is in the running
// configuration, autosave.json or the log, though deliveries are verified
// with the secret.
func TestSecretsStayOut(t *testing.T) {
	s := newTestSite(t)
	s.startLive(s.caddyfile(`command sh -c "env > env.txt"`))
	// Nor does a build see them, or the variables they come from.
	env, err := os.ReadFile(filepath.Join(s.path, "current", "env.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, leak := range []string{testSecret, testOldSecret, testToken, "CWH_TEST_SECRET", "CWH_TEST_TOKEN"} {
		if bytes.Contains(env, []byte(leak)) {
			t.Errorf("the build's environment holds %q", leak)
		}
	}
	for _, c := range deliveryCases(t) {
		send(t, c)
	}

	resp, err := http.Get("http://" + adminAddr + "/config/")
	if err != nil {
		t.Fatal(err)
	}
	config, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(caddy.ConfigAutosavePath, os.Getenv("CWH_TEST_HOME")) {
		t.Fatalf("autosave goes to %s, outside the test's folder", caddy.ConfigAutosavePath)
	}
	autosave, err := os.ReadFile(caddy.ConfigAutosavePath)
	if err != nil {
		t.Fatal(err)
	}
	log, err := os.ReadFile(s.log)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string][]byte{"/config/": config, "autosave.json": autosave, "the log": log} {
		for _, secret := range []string{testSecret, testOldSecret, testToken} {
			if bytes.Contains(content, []byte(secret)) {
				t.Errorf("%s holds %q", name, secret)
			}
		}
	}
	if !bytes.Contains(config, []byte("{env.CWH_TEST_SECRET}")) {
		t.Errorf("/config/ lacks the secret's placeholder: %s", config)
	}
	entries, err := testkit.ParseLog(bytes.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	answered := 0
	for _, e := range entries {
		if e.From("http.handlers.github_webhook") && e.Str("delivery") == testDeliveryID {
			answered++
		}
	}
	if answered != len(deliveryCases(t)) {
		t.Errorf("%d log lines of delivery %s, want one per delivery sent: %d", answered, testDeliveryID, len(deliveryCases(t)))
	}
}

// TestProvisionErrors: a configuration that cannot work is refused at load,
// before anything touches its folder, and the error never quotes a secret.
func TestProvisionErrors(t *testing.T) {
	t.Setenv("CWH_EMPTY", "")
	dir := t.TempDir()
	// On main before trimming, this file loaded as the secret " ".
	blank := filepath.Join(dir, "blank-secret")
	if err := os.WriteFile(blank, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	valid := func() Handler {
		return Handler{Repo: "octocat/blog", Secret: []string{"s3cret-value"}, Path: filepath.Join(dir, "site")}
	}
	for _, tc := range []struct {
		name   string
		modify func(h *Handler)
		err    string
	}{
		{"no repo", func(h *Handler) { h.Repo = "" }, "repo is required"},
		{"repo without owner", func(h *Handler) { h.Repo = "blog" }, "not owner/name"},
		{"repo with two slashes", func(h *Handler) { h.Repo = "a/b/c" }, "not owner/name"},
		{"no secret", func(h *Handler) { h.Secret = nil }, "secret is required"},
		{"empty secret", func(h *Handler) { h.Secret = []string{""} }, "secret 1: is empty"},
		{"secret from an empty variable", func(h *Handler) { h.Secret = []string{"s", "{env.CWH_EMPTY}"} },
			"secret 2: placeholder {env.CWH_EMPTY} is unknown or empty"},
		{"secret from a missing file", func(h *Handler) { h.Secret = []string{"{file." + dir + "/missing}"} },
			"unknown or empty"},
		{"secret of white space", func(h *Handler) { h.Secret = []string{"s3cret-value", " \t "} },
			"secret 2: holds only white space"},
		{"secret file of white space", func(h *Handler) { h.Secret = []string{"{file." + blank + "}"} },
			"secret 1 {file." + blank + "}: holds only white space"},
		{"literal secret with braces", func(h *Handler) { h.Secret = []string{"s3cret-{value}"} },
			"secret 1: a placeholder in it is unknown or empty"},
		{"token from an empty variable", func(h *Handler) { h.Token = "{env.CWH_EMPTY}" }, "token: placeholder"},
		{"no path", func(h *Handler) { h.Path = "" }, "path is required"},
		{"publish climbs out", func(h *Handler) { h.Publish = "../public" }, "climbs out"},
		{"absolute publish", func(h *Handler) { h.Publish = "/srv/www" }, "must be relative"},
		{"remote with credentials", func(h *Handler) { h.Remote = "https://user:s3cret-value@example.com/r.git" },
			"must not carry credentials"},
		{"negative max_body", func(h *Handler) { h.MaxBody = -1 }, "max_body"},
		{"unknown forge", func(h *Handler) { h.Forge = "sourcehut" }, `forge "sourcehut"`},
		{"gitea without its base URL", func(h *Handler) { h.Forge = "gitea" }, "forge gitea needs its base URL"},
		{"token over http to another host", func(h *Handler) { h.Forge, h.ForgeURL, h.Token = "gitea", "http://git.example.com", "t" },
			"only to a loopback host"},
		{"GitLab signing token not base64", func(h *Handler) { h.Forge, h.Secret = "gitlab", []string{"whsec_s3cret-value!"} },
			"a GitLab signing token is whsec_ and a key in base64"},
		{"negative timeout", func(h *Handler) { h.Timeout = -1 }, "timeout"},
		{"negative poll", func(h *Handler) { h.Poll = caddy.Duration(-time.Second) }, "poll"},
		{"negative keep", func(h *Handler) { h.Keep = -1 }, "keep"},
		{"negative depth", func(h *Handler) { h.Depth = intPtr(-2) }, "depth"},
		{"bad env name", func(h *Handler) { h.Env = map[string]string{"A=B": "c"} }, "env name"},
		{"empty command", func(h *Handler) { h.Command = [][]string{{}} }, "command 1 is empty"},
		{"bad branch", func(h *Handler) { h.Branch = "-x" }, "not a valid branch"},
		{"cache climbs out (JSON)", func(h *Handler) { h.Command = [][]string{{"make"}}; h.Cache = []string{"gen", "../x"} },
			`cache folder "../x" climbs out of the release`},
		{"cache without command", func(h *Handler) { h.Cache = []string{"node_modules"} }, `cache "node_modules" needs a command`},
		{"cluster name with a slash", func(h *Handler) { h.Cluster = "a/b" }, `cluster name "a/b" must be`},
		{"cluster name too long", func(h *Handler) { h.Cluster = strings.Repeat("a", 65) }, "cluster name"},
		{"cluster_poll without cluster", func(h *Handler) { h.ClusterPoll = caddy.Duration(time.Second) }, "cluster_poll needs cluster"},
		{"negative cluster_poll", func(h *Handler) { h.Cluster = "blog"; h.ClusterPoll = caddy.Duration(-time.Second) }, "cluster_poll -1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			h := valid()
			tc.modify(&h)
			err := h.Provision(ctx)
			cleanupErr := h.Cleanup()
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want one with %q", err, tc.err)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error quotes the secret: %v", err)
			}
			if cleanupErr != nil {
				t.Errorf("cleanup: %v", cleanupErr)
			}
			if _, err := os.Stat(filepath.Join(dir, "site")); err == nil {
				t.Error("the folder was created")
			}
			if deployerOf(filepath.Join(dir, "site")) != nil {
				t.Error("a deployer was started")
			}
		})
	}
}

// The handler passes depth, keep and timeout to the deployer as the user
// wrote them, with one meaning each: unset depth is 1, depth 0 the full
// history; keep 0 and timeout 0 the deployer's defaults.
func TestDeployerConfigSettings(t *testing.T) {
	zero := 0
	five := 5
	for _, tc := range []struct {
		name      string
		h         Handler
		wantDepth int
	}{
		{"depth unset fetches one commit", Handler{}, 1},
		{"depth 0 fetches the full history", Handler{Depth: &zero}, 0},
		{"depth 5", Handler{Depth: &five}, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.h.deployerConfig("")
			if cfg.Depth != tc.wantDepth {
				t.Errorf("deployer depth = %d, want %d", cfg.Depth, tc.wantDepth)
			}
		})
	}
	h := Handler{Keep: 7, Timeout: caddy.Duration(time.Minute)}
	if cfg := h.deployerConfig(""); cfg.Keep != 7 || cfg.Timeout != time.Minute {
		t.Errorf("keep, timeout = %d, %v; want 7, 1m as configured", cfg.Keep, cfg.Timeout)
	}
}
