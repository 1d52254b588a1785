package caddywebhook

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
)

// TestObserverKinds: each kind of deployer event becomes the Caddy event and
// the metrics that a subscriber and /metrics expect, and a kind the observer
// does not know becomes neither (on main it was emitted as deploy_started).
func TestObserverKinds(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	events := &caddyevents.App{Subscriptions: []*caddyevents.Subscription{{
		Events:      []string{EventDeployStarted, EventDeploySucceeded, EventDeployFailed},
		HandlersRaw: []json.RawMessage{json.RawMessage(`{"handler": "github_webhook_test_recorder"}`)},
	}}}
	if err := events.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := events.Start(); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		kind    deployer.EventKind
		event   string // the Caddy event emitted; none when empty
		deploys string // the result counted in deploys_total; none when empty
		live    bool   // whether live_info shows the event's release
	}{
		{deployer.EventStarted, EventDeployStarted, "", false},
		{deployer.EventSucceeded, EventDeploySucceeded, "ok", true},
		{deployer.EventFailed, EventDeployFailed, "error", false},
		{deployer.EventRolledBack, "", "", true},
		{deployer.EventRecovered, "", "", true},
		{deployer.EventFollowed, "", "followed", true},
		{"deploy_paused", "", "", false}, // a kind this observer does not know
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m, err := newMetrics(reg)
			if err != nil {
				t.Fatal(err)
			}
			o := &observer{ctx: ctx, path: "/srv/site", metrics: m, events: events}
			commit, release := "commit-of-"+string(tc.kind), "20260101T000000Z-"+string(tc.kind)
			o.notify(deployer.Event{
				Kind: tc.kind, Path: "/srv/site", Commit: commit, Release: release, Reason: deployer.ReasonDelivery,
				Duration: time.Second, Err: errors.New("exit status 1"), At: time.Now(),
			})

			for _, name := range []string{EventDeployStarted, EventDeploySucceeded, EventDeployFailed} {
				want := 0
				if name == tc.event {
					want = 1
				}
				if got := recordedWith(name, commit); len(got) != want {
					t.Errorf("%d %s events, want %d: %+v", len(got), name, want, got)
				}
			}
			series, err := gathered(reg)
			if err != nil {
				t.Fatal(err)
			}
			for _, result := range []string{"ok", "error", "followed"} {
				want := 0.0
				if result == tc.deploys {
					want = 1
				}
				if got := series[`caddy_github_webhook_deploys_total{path="/srv/site",result="`+result+`"}`]; got != want {
					t.Errorf("deploys_total{result=%q} = %v, want %v", result, got, want)
				}
			}
			live := `caddy_github_webhook_live_info{commit="` + commit + `",path="/srv/site",release="` + release + `"}`
			if _, ok := series[live]; ok != tc.live {
				t.Errorf("live_info shows the event's release: %v, want %v; series: %v", ok, tc.live, series)
			}
		})
	}
}

// gathered returns the counters and gauges of reg by series, written as
// /metrics writes them: name{label="value",...}, labels in name order.
func gathered(reg *prometheus.Registry) (map[string]float64, error) {
	families, err := reg.Gather()
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			out[f.GetName()+"{"+strings.Join(labels, ",")+"}"] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return out, nil
}
