package main

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
)

// burst sends a genuine delivery for each of 200 commits (40 in the short
// run), the branch moved to each in turn, evenly within 5 s (1 s): every
// delivery is answered 202, and the last commit goes live and is served.
func (r *run) burst() error {
	n, window, posts := 200, 5*time.Second, 20
	if r.short {
		n, window = 40, time.Second
	}
	files, extra, what := buildSite(posts)
	tb, err := r.newTestbed("burst", "", files, extra)
	if err != nil {
		return err
	}
	defer tb.caddy.stop()
	s, p := tb.site, tb.caddy

	r.logf("burst: preparing %d commits", n)
	commits, err := r.stage(tb.repo, tb.first, n, buildVersion)
	if err != nil {
		return err
	}
	defer commits.close()
	shas := commits.shas
	results := make([]delivery, n+1)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 1; i <= n; i++ {
		if err := commits.move(i); err != nil {
			return err
		}
		wg.Go(func() { results[i] = r.deliver(s, pushPayload(shas[i-1], shas[i])) })
		time.Sleep(time.Until(start.Add(window * time.Duration(i) / time.Duration(n))))
	}
	wg.Wait()
	sentIn := time.Since(start)
	lastSent := time.Now()
	_, liveErr := waitLive(s.path, shas[n], 2*time.Minute)
	toLive := time.Since(lastSent)
	served, serveErr := servedVersion(s)
	// Once the worker has looked at the last commit, no deploy can follow:
	// the tip is live and the branch stays. Then the counts are final.
	_, lookErr := p.waitStatus("the worker's look at the last commit", time.Minute, func(st deployer.Status) bool {
		return st.Checked != nil && st.Checked.Commit == shas[n] && st.Running == nil
	})
	ok, okErr := p.metric("caddy_github_webhook_deploys_total", map[string]string{"result": "ok"})
	failed, failedErr := p.metric("caddy_github_webhook_deploys_total", map[string]string{"result": "error"})
	if err := errors.Join(lookErr, okErr, failedErr); err != nil {
		return err
	}

	accepted := 0
	var answers []time.Duration
	var other []string
	for _, d := range results[1:] {
		answers = append(answers, d.elapsed)
		if d.err == nil && d.status == http.StatusAccepted {
			accepted++
		} else if len(other) < 3 {
			other = append(other, fmt.Sprintf("%d %v %s", d.status, d.err, d.body))
		}
	}
	slices.Sort(answers)
	builds := int(ok+failed) - 1 // the first deploy is the testbed's
	r.rep.info("site", what)
	r.rep.check("deliveries answered 202", fmt.Sprintf("%d of %d, sent in %v; answer p50 / max %v / %v %s",
		accepted, n, sentIn.Round(10*time.Millisecond), pct(answers, 50), pct(answers, 100), strings.Join(other, "; ")),
		fmt.Sprint(n), accepted == n)
	r.rep.info("builds (deploys that ran)", fmt.Sprintf("%d for %d commits; %.0f failed", builds, n, failed))
	r.rep.perf("builds for the burst", fmt.Sprint(builds), fmt.Sprintf("few (≤ %d)", n/4), builds <= n/4 && failed == 0)
	lval := fmt.Sprintf("yes, %v after the last delivery", roundDur(toLive))
	if liveErr != nil {
		lval = liveErr.Error()
	}
	r.rep.check("last commit live", lval, "yes", liveErr == nil)
	sval := fmt.Sprintf("version %d", served)
	if serveErr != nil {
		sval = serveErr.Error()
	}
	r.rep.check("site serves the last version", sval, fmt.Sprintf("version %d", n), serveErr == nil && served == n)
	return nil
}
