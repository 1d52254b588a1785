package caddywebhook

import (
	"errors"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/notify"
)

// Names of the Caddy events a deploy emits, for `events { on <name> ... }`.
// Their data: path, commit, release, reason, duration (seconds) and, for a
// failure, error.
const (
	EventDeployStarted   = "github_webhook.deploy_started"
	EventDeploySucceeded = "github_webhook.deploy_succeeded"
	EventDeployFailed    = "github_webhook.deploy_failed"
)

// metrics are the collectors of one configuration, in its registry (served
// on Caddy's /metrics). Every series has the label path, the target's folder.
type metrics struct {
	deliveries  *prometheus.CounterVec   // path, event, result
	deploys     *prometheus.CounterVec   // path, result
	duration    *prometheus.HistogramVec // path
	lastSuccess *prometheus.GaugeVec     // path
	liveInfo    *prometheus.GaugeVec     // path, commit, release
	apiRequests *prometheus.CounterVec   // path, endpoint (the API's path template), result
	cluster     *clusterCollector        // path: the groups' behind and storage errors
}

// newMetrics registers the collectors in reg, or takes those a handler of the
// same configuration registered already.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "caddy", "github_webhook"
	m := &metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "deliveries_total",
			Help: "Webhook deliveries answered, by event (\"unverified\" before the signature is checked) and result.",
		}, []string{"path", "event", "result"}),
		deploys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "deploys_total",
			Help: "Deploys that ran, by result (ok or error; followed: this node switched to its group's live release without building). A wake that finds the tip live is not a deploy.",
		}, []string{"path", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "deploy_duration_seconds",
			Help:    "How long deploys took, fetch and build together.",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
		}, []string{"path"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "last_success_timestamp_seconds",
			Help: "When the last deploy that succeeded ended, in Unix seconds.",
		}, []string{"path"}),
		liveInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "live_info",
			Help: "The live release and its commit (value 1).",
		}, []string{"path", "commit", "release"}),
		apiRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "github_api_requests_total",
			Help: "Requests to GitHub's REST API (deployments, checks), by endpoint (its path template) and result: " +
				"ok, retry (failed, tried again), error (failed for good) or dropped (a report given up).",
		}, []string{"path", "endpoint", "result"}),
		cluster: newClusterCollector(),
	}
	var err error
	m.deliveries, err = register(reg, m.deliveries)
	if err == nil {
		m.deploys, err = register(reg, m.deploys)
	}
	if err == nil {
		m.duration, err = register(reg, m.duration)
	}
	if err == nil {
		m.lastSuccess, err = register(reg, m.lastSuccess)
	}
	if err == nil {
		m.liveInfo, err = register(reg, m.liveInfo)
	}
	if err == nil {
		m.apiRequests, err = register(reg, m.apiRequests)
	}
	if err == nil {
		m.cluster, err = register(reg, m.cluster)
	}
	return m, err
}

// register registers c, or returns the collector registered before it.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

// setLive records the live release of path.
func (m *metrics) setLive(path string, live *deployer.Live) {
	m.liveInfo.DeletePartialMatch(prometheus.Labels{"path": path})
	if live != nil {
		m.liveInfo.WithLabelValues(path, live.Commit, live.Release).Set(1)
	}
}

// restore sets the gauges of path from the deployer's status, for a
// configuration that starts with a deployer already running or a site
// already live.
func (m *metrics) restore(path string, s deployer.Status) {
	m.setLive(path, s.Live)
	if s.Last != nil && s.Last.Result == "ok" {
		m.lastSuccess.WithLabelValues(path).Set(float64(s.Last.At.UnixNano()) / 1e9)
	}
}

// apiCounter returns what counts the requests to GitHub's API made for the
// target at path, by endpoint (the API's path template, such as
// githubapi.PathDeployments) and result. It is safe on a nil m.
func (m *metrics) apiCounter(path string) func(endpoint, result string) {
	return func(endpoint, result string) {
		if m != nil {
			m.apiRequests.WithLabelValues(path, endpoint, result).Inc()
		}
	}
}

// delivery counts an answered delivery. Its event label is "unverified"
// until the signature is verified: before, the header is anybody's, and
// counting by it would let anybody add series.
func (m *metrics) delivery(path string, a answer) {
	event := "unverified"
	if a.verified {
		event = a.event
	}
	m.deliveries.WithLabelValues(path, event, a.Result).Inc()
}

// observer turns the deployer's events of one target into metrics, Caddy
// events and nothing else; it runs on the deployer's goroutine. Each kind of
// event it knows is mapped by name; one it does not know (a deployer newer
// than the observer) is left out of both, rather than reported as another.
type observer struct {
	ctx     caddy.Context
	path    string
	metrics *metrics
	events  *caddyevents.App // nil if the events app could not load

	// reporter reports deploys to the forge, as GitHub deployments or
	// commit statuses (nil without deployments), with siteURL as the
	// environment's link.
	reporter deployReporter
	siteURL  string

	// notifier pushes deploy results out (nil without notify); repo and
	// branch are the configuration's, for its messages, and web where its
	// forge shows a commit.
	notifier     *notify.Notifier
	repo, branch string
	web          forgeWeb
}

func (o *observer) notify(e deployer.Event) {
	o.report(e)
	o.pushResult(e)
	data := map[string]any{
		"path":    e.Path,
		"commit":  e.Commit,
		"release": e.Release,
		"reason":  string(e.Reason),
	}
	var name string
	switch e.Kind {
	case deployer.EventStarted:
		name = EventDeployStarted
	case deployer.EventSucceeded:
		name = EventDeploySucceeded
		data["duration"] = e.Duration.Seconds()
		o.metrics.deploys.WithLabelValues(o.path, "ok").Inc()
		o.metrics.duration.WithLabelValues(o.path).Observe(e.Duration.Seconds())
		o.metrics.lastSuccess.WithLabelValues(o.path).Set(float64(e.At.UnixNano()) / 1e9)
		o.metrics.setLive(o.path, &deployer.Live{Commit: e.Commit, Release: e.Release})
	case deployer.EventRecovered:
		o.metrics.setLive(o.path, &deployer.Live{Commit: e.Commit, Release: e.Release})
		if !e.At.IsZero() {
			o.metrics.lastSuccess.WithLabelValues(o.path).Set(float64(e.At.UnixNano()) / 1e9)
		}
		return
	case deployer.EventRolledBack:
		o.metrics.setLive(o.path, &deployer.Live{Commit: e.Commit, Release: e.Release})
		return
	case deployer.EventInterrupted:
		return
	case deployer.EventFollowed:
		o.metrics.deploys.WithLabelValues(o.path, "followed").Inc()
		o.metrics.lastSuccess.WithLabelValues(o.path).Set(float64(e.At.UnixNano()) / 1e9)
		o.metrics.setLive(o.path, &deployer.Live{Commit: e.Commit, Release: e.Release})
		return
	case deployer.EventFailed:
		name = EventDeployFailed
		data["duration"] = e.Duration.Seconds()
		if e.Err != nil {
			data["error"] = e.Err.Error()
		}
		o.metrics.deploys.WithLabelValues(o.path, "error").Inc()
		o.metrics.duration.WithLabelValues(o.path).Observe(e.Duration.Seconds())
	default:
		return // a kind this observer does not know is not a deploy that started
	}
	if o.events != nil {
		o.events.Emit(o.ctx, name, data)
	}
}

// report passes e to GitHub as a deployment or its status. The reporter
// queues it: this never blocks the deployer.
func (o *observer) report(e deployer.Event) {
	r := o.reporter
	if r == nil || e.Commit == "" {
		// A fetch that failed has no commit to report on, nor a live
		// release the state does not know the commit of.
		return
	}
	switch e.Kind {
	case deployer.EventStarted:
		r.Started(e.Commit, string(e.Reason))
	case deployer.EventSucceeded:
		// The deployer emits it once current points at the release.
		r.Succeeded(e.Commit, o.siteURL)
	case deployer.EventFailed:
		r.Failed(e.Commit, failureSummary(e.Err))
	case deployer.EventInterrupted:
		r.Interrupted(e.Commit)
	case deployer.EventRolledBack:
		r.RolledBack(e.Commit, o.siteURL)
	}
}
