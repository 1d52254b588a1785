package caddywebhook

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
)

func init() {
	caddy.RegisterModule(StatusPage{})
}

// StatusPage renders every github_webhook target of this Caddy as one HTML
// page, for people: what is live (its commit linked to the forge), the
// deploy in progress, the last deploys with their result, reason and
// duration, a chart of deploy durations, the nodes of a group and whether
// they serve the same release, the previews of pull requests (linked to
// the pull request, the preview and its head commit), and the end of the
// output of the last failed build. The page holds no script, and is sent with a
// Content-Security-Policy that allows none.
//
// It shows what the admin API's GET /github_webhook/deploys shows, less
// the remote and the log paths, and more history, but a failed build's
// output may say more than you want strangers to read: mount it behind
// basic_auth, or on a host only your network reaches. It answers GET and
// HEAD, and never calls the next handler.
type StatusPage struct{}

// CaddyModule returns the Caddy module information.
func (StatusPage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.github_webhook_status",
		New: func() caddy.Module { return new(StatusPage) },
	}
}

// statusCSP allows the page's own inline style and nothing else: no
// script, no frame, no request anywhere (the chart is inline SVG).
const statusCSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// ServeHTTP renders the page.
func (p *StatusPage) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return caddyhttp.Error(http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed", r.Method))
	}
	targets := allTargets()
	views := make([]statusView, 0, len(targets))
	for _, t := range targets {
		views = append(views, viewOf(t.d.Status(), t.d.History(), t.web()))
	}
	slices.SortFunc(views, func(a, b statusView) int { return strings.Compare(a.Path, b.Path) })
	var buf bytes.Buffer
	if err := renderStatusPage(&buf, views, time.Now()); err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("rendering the status page: %w", err))
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", statusCSP)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(buf.Bytes())
	}
	return nil
}

// How much of the history the page shows.
const (
	pageDeploys = 25  // rows of the table of last deploys
	chartBars   = 100 // deploys in the chart of durations
)

//go:embed statuspage.html
var statusPageHTML string

var statusPageTemplate = template.Must(template.New("status").Funcs(template.FuncMap{
	"short":    shortCommit,
	"seconds":  formatSeconds,
	"ago":      ago,
	"since":    func(now, t time.Time) string { return formatSeconds(max(now.Sub(t), 0)) },
	"utc":      func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"duration": func(d deployer.Seconds) string { return formatSeconds(time.Duration(d)) },
}).Parse(statusPageHTML))

// statusPage is what the template renders.
type statusPage struct {
	Now     time.Time
	Targets []statusView
	Running bool // a deploy runs somewhere: the page reloads itself
}

// statusView is one target as the page shows it.
type statusView struct {
	deployer.Status
	Forge   forgeWeb
	Deploys []deployer.Deploy // the newest, newest first
	More    int               // deploys kept but not in Deploys
	Chart   durationChart
	// Failed is the newest failed build (or, when no build failed, the
	// newest failed fetch), with its output tail when the history still
	// holds it; nil when nothing failed.
	Failed *deployer.Deploy
}

// viewOf builds the view of one target from its status, its history
// (newest first) and where its forge shows commits.
func viewOf(st deployer.Status, history []deployer.Deploy, web forgeWeb) statusView {
	v := statusView{Status: st, Forge: web}
	v.Deploys = history[:min(len(history), pageDeploys)]
	v.More = len(history) - len(v.Deploys)
	v.Chart = chartOf(history[:min(len(history), chartBars)])
	// The newest failed build, else the newest failed fetch: the table
	// shows the newer failures too.
	for i := range history {
		if history[i].Result != "error" {
			continue
		}
		if v.Failed == nil {
			v.Failed = &history[i]
		}
		if history[i].Release != "" {
			v.Failed = &history[i]
			break
		}
	}
	return v
}

// renderStatusPage writes the page of views, as of now.
func renderStatusPage(w *bytes.Buffer, views []statusView, now time.Time) error {
	page := statusPage{Now: now, Targets: views}
	for _, v := range views {
		if v.Running != nil {
			page.Running = true
		}
	}
	return statusPageTemplate.Execute(w, page)
}

// durationChart is an SVG bar chart of deploy durations, oldest on the
// left, its coordinates computed here so that the template only places
// them.
type durationChart struct {
	Width, Height int
	Max           string // the longest duration, the chart's top
	Bars          []chartBar
}

type chartBar struct {
	X, Y, W, H string // SVG user units
	Result     string // "ok" or "error": the bar's class
	Title      string // shown on hover
}

const (
	chartWidth  = 600
	chartHeight = 120
)

// chartOf charts deploys (newest first).
func chartOf(deploys []deployer.Deploy) durationChart {
	c := durationChart{Width: chartWidth, Height: chartHeight}
	if len(deploys) == 0 {
		return c
	}
	var top time.Duration
	for _, d := range deploys {
		top = max(top, time.Duration(d.Duration))
	}
	if top <= 0 {
		top = time.Second
	}
	c.Max = formatSeconds(top)
	step := float64(chartWidth) / float64(max(len(deploys), 20))
	c.Bars = make([]chartBar, 0, len(deploys))
	for i := len(deploys) - 1; i >= 0; i-- {
		d := deploys[i]
		h := float64(chartHeight) * float64(d.Duration) / float64(top)
		h = max(h, 1) // a deploy of no time still shows
		x := float64(len(deploys)-1-i) * step
		c.Bars = append(c.Bars, chartBar{
			X: num(x + step*0.1), Y: num(chartHeight - h), W: num(step * 0.8), H: num(h),
			Result: d.Result,
			Title:  fmt.Sprintf("%s %s %s, %s", d.Started.UTC().Format("2006-01-02 15:04"), shortCommit(d.Commit), d.Result, formatSeconds(time.Duration(d.Duration))),
		})
	}
	return c
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }

// shortCommit abbreviates a commit as release names do.
func shortCommit(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}

// formatSeconds writes d for people: 850ms, 4.2s, 3m05s.
func formatSeconds(d time.Duration) string {
	switch {
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
	}
	d = d.Round(time.Second)
	return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
}

// ago writes how long before now t was: 45s, 12m, 3h, 2d.
func ago(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(max(d, 0).Seconds())) + "s ago"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + "m ago"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + "h ago"
	}
	return strconv.Itoa(int(d.Hours()/24)) + "d ago"
}

// Interface guards
var (
	_ caddy.Module                = (*StatusPage)(nil)
	_ caddyhttp.MiddlewareHandler = (*StatusPage)(nil)
)
