package caddywebhook

import (
	"context"
	"fmt"
	"path/filepath"
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
