package caddywebhook

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	zapobserver "go.uber.org/zap/zaptest/observer"
)

// After a reload fails, the deployer logs to the configuration that still
// runs, not to the one that failed (whose log writers Caddy closes): release
// puts back the logger along with the settings.
func TestReleaseRestoresLogger(t *testing.T) {
	remote := testkit.NewRemote(t)
	tip := remote.Commit("first", map[string]string{"index.html": "v1"})
	cfg := deployer.Config{Path: filepath.Join(t.TempDir(), "site"), Remote: remote.Bare}

	runningCore, running := zapobserver.New(zapcore.DebugLevel)
	failedCore, failed := zapobserver.New(zapcore.DebugLevel)
	d, err := deployer.New(cfg, zap.New(runningCore))
	if err != nil {
		t.Fatal(err)
	}
	tg := &target{d: d}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := d.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()

	old, reloaded := make(chan struct{}), make(chan struct{})
	if err := tg.hold(old, cfg, zap.New(runningCore), forgeWeb{}, false); err != nil {
		t.Fatal(err)
	}
	// A reload provisions its handler, then fails: its handler is released.
	if err := tg.hold(reloaded, cfg, zap.New(failedCore), forgeWeb{}, true); err != nil {
		t.Fatal(err)
	}
	tg.release(reloaded)

	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, time.Minute, "the first deploy", func() error {
		if c := d.Status().Checked; c == nil || c.Outcome != deployer.OutcomeDeployed || c.Commit != tip {
			return fmt.Errorf("checked = %+v", c)
		}
		return nil
	})
	// The deploy has ended: everything it logged is in one of the two.
	if n := failed.Len(); n != 0 {
		t.Errorf("%d entries logged to the failed configuration, first: %q", n, failed.All()[0].Message)
	}
	if running.FilterField(zap.String("path", cfg.Path)).Len() == 0 {
		t.Error("the running configuration's logger got nothing from the deploy")
	}
}

// TestSamePathTwice: two handlers of one configuration naming one path is a
// load error, and the configuration that was running keeps its deployer and
// its settings.
func TestSamePathTwice(t *testing.T) {
	s := newTestSite(t)
	s.startLive(s.caddyfile("command sh -c `echo A > built.txt`"))
	d := deployerOf(s.path)

	twice := strings.Replace(s.caddyfile("command sh -c `echo B > built.txt`"), siteURL+" {", fmt.Sprintf(siteURL+` {
	github_webhook /other {
		repo   octocat/other
		secret other
		path   %s/../site/
	}
`, s.path), 1)
	err := loadConfig(twice)
	if err == nil || !strings.Contains(err.Error(), "is used by another github_webhook handler of this configuration") {
		t.Fatalf("loading a config that names %s twice: %v", s.path, err)
	}
	if deployerOf(s.path) != d {
		t.Fatal("the failed load replaced the deployer")
	}
	if refs, _ := targets.References(s.path); refs != 1 {
		t.Errorf("%d references to the deployer, want 1", refs)
	}

	// The running configuration's settings are in force again.
	c2 := s.repo.Commit("test commit", map[string]string{"index.html": "two"})
	pushDelivery(t, testSecret)
	s.waitLive(c2)
	if got := get(t, siteURL+"/built.txt"); got != "A\n" {
		t.Errorf("built.txt = %q, want the running configuration's build", got)
	}
}

// TestRemovingTheHandlerStopsTheDeployer: once no configuration names a path,
// its deployer is closed and the folder's lock is free.
func TestRemovingTheHandlerStopsTheDeployer(t *testing.T) {
	s := newTestSite(t)
	s.startLive(s.caddyfile(""))

	if err := loadConfig(emptyConfig); err != nil {
		t.Fatal(err)
	}
	if d := deployerOf(s.path); d != nil {
		t.Fatal("the deployer is still in the pool")
	}
	d, err := deployer.New(deployer.Config{Path: s.path, Remote: s.repo.Bare, Repo: testRepo, Branch: testBranch}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); err != nil {
		t.Fatalf("the folder is still taken: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// A panic inside one site's deploy (injected through the deployer's
// WithFault option, in the deployer that the pool hands to the handler)
// leaves Caddy serving every site: the other site, and the panicking
// site's live release; the admin API reports the target failed with the
// panic's message; and the next wake deploys again. On main the panic
// ended the process, and with it every site Caddy served.
func TestPanicInDeployKeepsCaddyServing(t *testing.T) {
	s := newTestSite(t)
	first := s.repo.Commit("first version", map[string]string{"index.html": "first"})
	other := testkit.NewRemoteOn(t, testBranch)
	otherFirst := other.Commit("other first", map[string]string{"index.html": "other first"})
	otherPath := filepath.Join(s.dir, "other")

	// The second site's deployer, made before Caddy loads the
	// configuration: the handler finds it in the pool and takes it over.
	var armed atomic.Bool
	var panics atomic.Int32
	fault := deployer.WithFault(func(step, _ string) {
		if step == deployer.FaultSync && armed.Load() && panics.Add(1) == 1 {
			panic("boom in the other site's deploy")
		}
	})
	_, loaded, err := targets.LoadOrNew(otherPath, func() (caddy.Destructor, error) {
		d, err := deployer.New(deployer.Config{Path: otherPath, Remote: other.Bare, Branch: testBranch}, zap.NewNop(), fault)
		if err != nil {
			return nil, err
		}
		return &target{d: d}, nil
	})
	if err != nil || loaded {
		t.Fatalf("putting the deployer of %s in the pool: %v (loaded %v)", otherPath, err, loaded)
	}
	t.Cleanup(func() { targets.Delete(otherPath) })

	config := strings.Replace(s.caddyfile(""), "\tfile_server\n", fmt.Sprintf(`	file_server
	handle_path /other/* {
		root * %s/current
		file_server
	}

	github_webhook /_other {
		repo   octocat/other
		secret other-secret
		path   %s
		remote %s
		branch %s
	}
`, otherPath, otherPath, other.Bare, testBranch), 1)
	s.start(config)
	s.waitLive(first)
	otherStatus := func() deployer.Status {
		var list []deployer.Status
		if code, body := adminDo(t, http.MethodGet, "/github_webhook/deploys", "", &list); code != 200 {
			t.Fatalf("GET /github_webhook/deploys: %d %s", code, body)
		}
		for _, st := range list {
			if st.Path == otherPath {
				return st
			}
		}
		t.Fatalf("no target %s in /github_webhook/deploys", otherPath)
		return deployer.Status{}
	}
	testkit.WaitFor(t, time.Minute, "the other site live", func() error {
		if st := otherStatus(); st.Live == nil || st.Live.Commit != otherFirst {
			return fmt.Errorf("live %+v, last %+v", st.Live, st.Last)
		}
		return nil
	})

	armed.Store(true)
	otherTip := other.Commit("other second", map[string]string{"index.html": "other second"})
	deploy := func() {
		if code, body := adminDo(t, http.MethodPost, "/github_webhook/deploy", `{"path": "`+otherPath+`"}`, nil); code != 202 {
			t.Fatalf("POST /github_webhook/deploy: %d %s", code, body)
		}
	}
	deploy()
	var st deployer.Status
	testkit.WaitFor(t, time.Minute, "the panic recovered", func() error {
		if st = otherStatus(); st.Checked == nil || st.Checked.Outcome != deployer.OutcomeFailed {
			return fmt.Errorf("checked %+v", st.Checked)
		}
		return nil
	})
	if st.Last == nil || st.Last.Result != "error" || st.Last.Commit != otherTip || !strings.Contains(st.Last.Error, "boom in the other site's deploy") {
		t.Errorf("the other site's last result after the panic: %+v", st.Last)
	}
	// Caddy serves both sites, the panicking one its live release.
	if got := get(t, siteURL+"/index.html"); got != "first" {
		t.Errorf("the site serves %q after the other's panic", got)
	}
	if got := get(t, siteURL+"/other/index.html"); got != "other first" {
		t.Errorf("the other site serves %q after its panic", got)
	}
	c2 := s.repo.Commit("second version", map[string]string{"index.html": "second"})
	pushDelivery(t, testSecret)
	s.waitLive(c2)

	// The next wake deploys again.
	deploy()
	testkit.WaitFor(t, time.Minute, "the other site's tip live", func() error {
		if st := otherStatus(); st.Live == nil || st.Live.Commit != otherTip {
			return fmt.Errorf("live %+v, last %+v", st.Live, st.Last)
		}
		return nil
	})
	if got := get(t, siteURL+"/other/index.html"); got != "other second" {
		t.Errorf("the other site serves %q after the next deploy", got)
	}
	if n := panics.Load(); n != 2 {
		t.Errorf("the other site synced %d releases after the fault was armed, want 2: the one that panicked, the next", n)
	}
}
