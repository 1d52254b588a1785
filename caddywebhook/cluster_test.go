package caddywebhook

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// TestClusterThroughCaddy: `cluster` in a Caddyfile with the global
// `storage file_system` joins the target to a group in Caddy's storage, as
// this instance (caddy.InstanceID): the build is stored there, the admin
// API shows the group, /metrics its gauges, and another node of the group
// on the same storage (a deployer in the test) serves what a delivery to
// Caddy built, without building.
func TestClusterThroughCaddy(t *testing.T) {
	s := newTestSite(t)
	storage := filepath.Join(s.dir, "storage")
	builds := filepath.Join(s.dir, "builds")
	config := strings.Replace(s.caddyfile(`cluster blog
		cluster_poll 50ms
		command sh -c "od -An -tx1 -N16 /dev/urandom > stamp && echo built >> $0" `+builds),
		"grace_period 1s", "grace_period 1s\n\tstorage file_system "+storage, 1)
	first := s.startLive(config)

	id, err := caddy.InstanceID()
	if err != nil {
		t.Fatal(err)
	}
	var list []deployer.Status
	if code, body := adminDo(t, http.MethodGet, "/github_webhook/deploys", "", &list); code != http.StatusOK || len(list) != 1 {
		t.Fatalf("GET deploys: %d %s", code, body)
	}
	cs := list[0].Cluster
	if cs == nil || cs.Name != "blog" || cs.Node != id.String() || cs.Live == nil || cs.Live.Commit != first ||
		cs.Live.Node != id.String() || cs.Live.Release != list[0].Live.Release {
		t.Fatalf("the admin API's cluster: %+v", cs)
	}
	if len(cs.Nodes) != 1 || !cs.Nodes[0].Self || cs.Nodes[0].Release != list[0].Live.Release {
		t.Errorf("nodes %+v", cs.Nodes)
	}
	if _, err := os.Stat(filepath.Join(storage, filepath.FromSlash(cs.Live.Archive))); err != nil {
		t.Errorf("the archive is not in Caddy's storage: %v", err)
	}
	p := regexp.QuoteMeta(s.path)
	if got := metric(t, `caddy_github_webhook_cluster_behind_seconds\{path="`+p+`"\}`); got != "0" {
		t.Errorf("cluster_behind_seconds = %q, want 0", got)
	}
	if got := metric(t, `caddy_github_webhook_cluster_storage_errors_total\{path="`+p+`"\}`); got != "0" {
		t.Errorf("cluster_storage_errors_total = %q, want 0", got)
	}

	// Another node of the group, on the same storage.
	other, err := deployer.New(deployer.Config{
		Path: filepath.Join(s.dir, "other"), Remote: s.repo.Bare, Branch: testBranch,
		Commands: [][]string{{"sh", "-c", "echo built >> \"$0\"", builds}},
		Cluster: &deployer.Cluster{Name: "blog", Node: "other", Storage: &certmagic.FileStorage{Path: storage},
			Poll: 50 * time.Millisecond},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close(context.Background()) })

	second := s.repo.Commit("second", map[string]string{"index.html": "second"})
	pushDelivery(t, testSecret)
	s.waitLive(second)
	testkit.WaitFor(t, time.Minute, "the other node to follow", func() error {
		if st := other.Status(); st.Live == nil || st.Live.Commit != second {
			return fmt.Errorf("other serves %+v", st.Live)
		}
		return nil
	})
	served, _ := os.ReadFile(filepath.Join(s.path, "current", "stamp"))
	followed, _ := os.ReadFile(filepath.Join(s.dir, "other", "current", "stamp"))
	if len(served) == 0 || string(served) != string(followed) {
		t.Errorf("Caddy serves stamp %q, the other node %q", served, followed)
	}
	if b, _ := os.ReadFile(builds); strings.Count(string(b), "\n") != 2 {
		t.Errorf("%d builds for two commits, want 2", strings.Count(string(b), "\n"))
	}
	if got := metric(t, `caddy_github_webhook_deploys_total\{path="`+p+`",result="ok"\}`); got != "2" {
		t.Errorf("deploys_total{ok} = %q, want 2 builds on this node", got)
	}
	testkit.WaitFor(t, time.Minute, "the group converged in the admin API", func() error {
		list = nil
		adminDo(t, http.MethodGet, "/github_webhook/deploys", "", &list)
		if cs := list[0].Cluster; !cs.Converged || len(cs.Nodes) != 2 {
			return fmt.Errorf("cluster %+v", cs)
		}
		return nil
	})
}

// TestClusterMetrics: the collector reports each group's behind seconds
// and storage errors, by path, and nothing for a target deploying alone.
func TestClusterMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.cluster.add("/srv/a", func() deployer.Status {
		return deployer.Status{Cluster: &deployer.ClusterStatus{Behind: deployer.Seconds(3 * time.Second), StorageErrors: 5}}
	})
	m.cluster.add("/srv/alone", func() deployer.Status { return deployer.Status{} })
	// A second handler of the same configuration takes the same collector.
	m2, err := newMetrics(reg)
	if err != nil || m2.cluster != m.cluster {
		t.Fatalf("second registration: %v", err)
	}
	series, err := gathered(reg)
	if err != nil {
		t.Fatal(err)
	}
	if got := series[`caddy_github_webhook_cluster_behind_seconds{path="/srv/a"}`]; got != 3 {
		t.Errorf("behind_seconds = %v, want 3", got)
	}
	if got := series[`caddy_github_webhook_cluster_storage_errors_total{path="/srv/a"}`]; got != 5 {
		t.Errorf("storage_errors_total = %v, want 5", got)
	}
	for k := range series {
		if strings.Contains(k, "/srv/alone") {
			t.Errorf("a target deploying alone has %s", k)
		}
	}
}
