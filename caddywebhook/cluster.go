package caddywebhook

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
)

// unmarshalCluster parses the cluster and cluster_poll subdirectives.
func (h *Handler) unmarshalCluster(d *caddyfile.Dispenser, name string) error {
	var s string
	if !d.AllArgs(&s) {
		return d.ArgErr()
	}
	switch name {
	case "cluster":
		if err := deployer.ValidateClusterName(s); err != nil {
			return d.Err(err.Error())
		}
		h.Cluster = s
	case "cluster_poll":
		dur, err := caddy.ParseDuration(s)
		if err != nil {
			return d.Errf("parsing cluster_poll: %v", err)
		}
		h.ClusterPoll = caddy.Duration(dur)
	}
	return nil
}

// provisionCluster joins the deployer's configuration to its group: Caddy's
// configured storage, this instance's id (a small file in Caddy's data
// folder, stable across restarts) and the host name as a label.
func (h *Handler) provisionCluster(ctx caddy.Context) error {
	if h.Cluster == "" {
		if h.ClusterPoll != 0 {
			return errors.New("cluster_poll needs cluster")
		}
		return nil
	}
	// Checked before anything is read: the deployer's Validate checks
	// them again, with the rest.
	if err := deployer.ValidateClusterName(h.Cluster); err != nil {
		return err
	}
	if h.ClusterPoll < 0 {
		return fmt.Errorf("cluster_poll %s must be positive", time.Duration(h.ClusterPoll))
	}
	id, err := caddy.InstanceID()
	if err != nil {
		return fmt.Errorf("cluster %s: reading this instance's id: %w", h.Cluster, err)
	}
	host, err := os.Hostname()
	if err != nil {
		host = ""
	}
	h.cfg.Cluster = &deployer.Cluster{
		Name:    h.Cluster,
		Node:    id.String(),
		Host:    host,
		Storage: ctx.Storage(),
		Poll:    time.Duration(h.ClusterPoll),
	}
	return nil
}

// clusterCollector reports, at each scrape, the group status of the targets
// of one configuration that deploy in a group:
// caddy_github_webhook_cluster_behind_seconds (gauge: how long the node has
// not served the group's live release) and
// caddy_github_webhook_cluster_storage_errors_total (counter: storage calls
// that failed since the deployer started).
type clusterCollector struct {
	behind *prometheus.Desc
	errors *prometheus.Desc

	mu      sync.Mutex
	targets map[string]func() deployer.Status // by path
}

func newClusterCollector() *clusterCollector {
	return &clusterCollector{
		behind: prometheus.NewDesc("caddy_github_webhook_cluster_behind_seconds",
			"How long this node has not served its group's live release (0 when it does).", []string{"path"}, nil),
		errors: prometheus.NewDesc("caddy_github_webhook_cluster_storage_errors_total",
			"Calls to the group's storage that failed since the deployer started.", []string{"path"}, nil),
		targets: make(map[string]func() deployer.Status),
	}
}

// add reports the group of the target at path, as status says.
func (c *clusterCollector) add(path string, status func() deployer.Status) {
	c.mu.Lock()
	c.targets[path] = status
	c.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.behind
	ch <- c.errors
}

// Collect implements prometheus.Collector.
func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	targets := maps.Clone(c.targets)
	c.mu.Unlock()
	for path, status := range targets {
		cl := status().Cluster
		if cl == nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.behind, prometheus.GaugeValue, time.Duration(cl.Behind).Seconds(), path)
		ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(cl.StorageErrors), path)
	}
}
