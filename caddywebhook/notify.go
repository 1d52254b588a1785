package caddywebhook

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/notify"
)

// Notify is one destination of deploy results.
type Notify struct {
	// The URL that receives a POST per message. A Slack or Discord
	// webhook's URL (and an ntfy topic's) is a credential: write it as a
	// placeholder, {env.SLACK_WEBHOOK_URL} or {file./etc/caddy/slack-url},
	// resolved when the configuration loads, so that it never appears in
	// the adapted JSON, the admin API or autosave. Logs and metrics name
	// its scheme and host only. Required.
	URL string `json:"url,omitempty"`

	// The body's shape: "json" (an object with type, timestamp and data:
	// kind, result, path, repo, branch, commit, release, reason, error,
	// duration, commit_url; signed as Standard Webhooks are when secret is
	// set), "slack" (an incoming webhook's {"text"}), "discord" (a
	// webhook's {"content"}, mentioning nobody) or "ntfy" (a plain-text
	// message with Title, Priority and Tags headers). Default: guessed
	// from the URL's host (hooks.slack.com, discord.com/api/webhooks,
	// ntfy.sh), else json.
	Format string `json:"format,omitempty"`

	// The signing secret of the json format, in the whsec_<base64> form
	// that the Standard Webhooks libraries take: each message carries
	// webhook-id (the same on every retry), webhook-timestamp and
	// webhook-signature. Placeholders are resolved as for the handler's
	// secret. Default: unsigned.
	Secret string `json:"secret,omitempty"`

	// Which results are sent: "failure" (a deploy failed; the site is as
	// it was), "recovered" (a deploy succeeded after one that failed),
	// "success" (every other deploy that succeeded). Default: failure and
	// recovered; a first good deploy at start-up is not news.
	On []string `json:"on,omitempty"`
}

// notifyCloseTimeout bounds how long unloading a configuration waits for
// its queued notifications to be sent.
const notifyCloseTimeout = 3 * time.Second

// unmarshalNotify reads one notify subdirective:
//
//	notify <url> [{
//		format json|slack|discord|ntfy
//		secret <value>
//		on     failure|recovered|success...
//	}]
func (h *Handler) unmarshalNotify(d *caddyfile.Dispenser) error {
	n := &Notify{}
	if !d.NextArg() {
		return d.ArgErr()
	}
	n.URL = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		if seen[name] {
			return d.Errf("notify: %s may be given only once", name)
		}
		seen[name] = true
		switch name {
		case "format":
			if !d.AllArgs(&n.Format) {
				return d.ArgErr()
			}
			if !slices.Contains(notify.Formats, notify.Format(n.Format)) {
				return d.Errf("notify format %q: want json, slack, discord or ntfy", n.Format)
			}
		case "secret":
			if !d.AllArgs(&n.Secret) {
				return d.ArgErr()
			}
		case "on":
			n.On = d.RemainingArgs()
			if len(n.On) == 0 {
				return d.ArgErr()
			}
			for _, k := range n.On {
				if !slices.Contains(notify.Kinds, notify.Kind(k)) {
					return d.Errf("notify on %q: want failure, recovered or success", k)
				}
			}
		default:
			return d.Errf("unknown notify subdirective %q", name)
		}
	}
	h.Notify = append(h.Notify, n)
	return nil
}

// validateNotify checks what can be checked before placeholders are
// resolved.
func (h *Handler) validateNotify() error {
	for i, n := range h.Notify {
		if n == nil || n.URL == "" {
			return fmt.Errorf("notify %d: url is required", i+1)
		}
		if n.Format != "" && !slices.Contains(notify.Formats, notify.Format(n.Format)) {
			return fmt.Errorf("notify %d: format %q: want json, slack, discord or ntfy", i+1, n.Format)
		}
		if n.Secret != "" && n.Format != "" && n.Format != string(notify.FormatJSON) {
			return fmt.Errorf("notify %d: secret signs the json format only", i+1)
		}
		for _, k := range n.On {
			if !slices.Contains(notify.Kinds, notify.Kind(k)) {
				return fmt.Errorf("notify %d: on %q: want failure, recovered or success", i+1, k)
			}
		}
	}
	return nil
}

// notifySources are the values of notify that may be placeholders of
// secrets: the build gets none of the variables they read, and a sandboxed
// build none of their files.
func (h *Handler) notifySources() []string {
	var v []string
	for _, n := range h.Notify {
		if n != nil {
			v = append(v, n.URL, n.Secret)
		}
	}
	return v
}

// provisionNotify resolves the placeholders of notify and makes the
// notifier that obs feeds; the notifier starts its goroutines at the first
// message and Cleanup closes it. It does no I/O.
func (h *Handler) provisionNotify(repl *caddy.Replacer, reg prometheus.Registerer, obs *observer) error {
	if len(h.Notify) == 0 {
		return nil
	}
	if err := h.validateNotify(); err != nil {
		return err
	}
	h.cfg.Unset = append(h.cfg.Unset, envPlaceholders(h.notifySources()...)...)
	h.cfg.Hide = append(h.cfg.Hide, sandboxHidden(h.notifySources()...)...)
	var dests []notify.Destination
	for i, n := range h.Notify {
		u, err := resolve(repl, n.URL)
		if err != nil {
			return fmt.Errorf("notify %d: url: %w", i+1, err)
		}
		d := notify.Destination{URL: strings.TrimSpace(u), Format: notify.Format(n.Format)}
		if n.Secret != "" {
			s, err := resolve(repl, n.Secret)
			if err != nil {
				return fmt.Errorf("notify %d: secret: %w", i+1, err)
			}
			d.Secret = strings.TrimSpace(s)
		}
		for _, k := range n.On {
			d.On = append(d.On, notify.Kind(k))
		}
		if err := d.Validate(); err != nil {
			return fmt.Errorf("notify %d: %w", i+1, err)
		}
		dests = append(dests, d)
	}
	counter := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "github_webhook", Name: "notifications_total",
		Help: "Notifications of deploy results, by result: ok (sent), retry (an attempt failed, tried again), " +
			"error (given up) or dropped (never sent: the queue was full, or the configuration unloaded).",
	}, []string{"path", "result"})
	counter, err := register(reg, counter)
	if err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	path, logger := h.key, h.logger.Named("notify")
	n, err := notify.New(dests, notify.WithResult(func(r notify.Result) {
		counter.WithLabelValues(path, r.Outcome).Inc()
		if r.Outcome == notify.OutcomeOK {
			return
		}
		fields := []zap.Field{zap.String("destination", r.Destination), zap.String("kind", string(r.Kind)),
			zap.String("result", r.Outcome), zap.Int("attempt", r.Attempt)}
		if r.Err != nil {
			fields = append(fields, zap.Error(r.Err))
		}
		logger.Warn("notification not sent", fields...)
	}))
	if err != nil {
		return err
	}
	h.notifier = n
	obs.notifier = n
	obs.repo, obs.branch = h.Repo, h.Branch
	obs.web = h.forgeWeb()
	return nil
}

// closeNotify sends what is queued, for notifyCloseTimeout at most.
func (h *Handler) closeNotify() {
	if h.notifier == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), notifyCloseTimeout)
	defer cancel()
	if err := h.notifier.Close(ctx); err != nil {
		h.logger.Warn("notifications dropped at unload", zap.Error(err))
	}
	h.notifier = nil
}

// failing remembers, per path and across reloads, whether the last deploy
// failed: the next that succeeds is "recovered". It starts from the
// deployer's status when a configuration takes the path.
var failing sync.Map // path -> bool

// pushResult sends e, a deploy's end, to the notifier: a failure, a
// recovery (the first success after a failure) or a success. Other events
// are not news. It never blocks the deployer.
func (o *observer) pushResult(e deployer.Event) {
	// failing follows every configuration's deploys, with notify or not,
	// so that one that adds notify knows whether the last deploy failed.
	var kind notify.Kind
	switch e.Kind {
	case deployer.EventFailed:
		kind = notify.Failure
		failing.Store(o.path, true)
	case deployer.EventSucceeded:
		kind = notify.Success
		if was, _ := failing.Swap(o.path, false); was == any(true) {
			kind = notify.Recovered
		}
	default:
		return
	}
	if o.notifier == nil {
		return
	}
	m := notify.Message{
		Kind: kind, Path: e.Path, Repo: o.repo, Branch: o.branch, Commit: e.Commit, Release: e.Release,
		Reason: string(e.Reason), Duration: e.Duration, At: e.At,
	}
	if m.Path == "" {
		m.Path = o.path
	}
	if e.Kind == deployer.EventFailed {
		// One line naming the step, never the build's output, which may
		// hold what the build printed.
		m.Error = failureSummary(e.Err)
	}
	m.CommitURL = o.web.Commit(o.repo, e.Commit)
	if m.At.IsZero() {
		m.At = time.Now()
	}
	o.notifier.Send(m)
}

// startFailing records, when a configuration takes path, whether its last
// deploy failed. A deployer that was running (loaded: a reload) keeps what
// its events said; a new one has not failed yet.
func startFailing(path string, loaded bool, s deployer.Status) {
	if !loaded {
		failing.Store(path, false)
		return
	}
	failing.LoadOrStore(path, s.Last != nil && s.Last.Result == "error")
}
