package caddywebhook

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
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
	if err := tg.hold(old, cfg, zap.New(runningCore), false); err != nil {
		t.Fatal(err)
	}
	// A reload provisions its handler, then fails: its handler is released.
	if err := tg.hold(reloaded, cfg, zap.New(failedCore), true); err != nil {
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
