package main

import (
	"fmt"
	"runtime"
	"slices"
	"time"
)

// serve measures the site under load while deploys run back to back, against
// a baseline without deploys in the same run. Deploys and baselines
// alternate, a few deploys then as long without, so that whatever else the
// machine does weighs on both alike. Every body served must be exactly one
// committed version.
func (r *run) serve() error {
	deploys, cycles, nfiles, conns := 20, 4, 200, 16
	if r.short {
		deploys, cycles, nfiles = 5, 1, 50
	}
	tb, err := r.newTestbed("serve", "", plainSite(nfiles), nil)
	if err != nil {
		return err
	}
	defer tb.caddy.stop()
	s, p := tb.site, tb.caddy

	// A deploy moves the remote branch to the next staged commit, delivers
	// it, and waits until it is live.
	versions := &versionSet{}
	versions.add(plainIndex(0))
	total := deploys
	if r.wrk {
		total *= 2
	}
	commits, err := r.stage(tb.repo, tb.first, total, func(i int) map[string]string {
		versions.add(plainIndex(i))
		return map[string]string{"index.html": plainIndex(i)}
	})
	if err != nil {
		return err
	}
	defer commits.close()
	shas := commits.shas
	v := 0
	var times []time.Duration
	var answers []time.Duration // delivery → 202, of the deploys' own deliveries
	var deployCPU time.Duration // of Caddy's children: git
	deployRun := func(n int) func() error {
		return func() error {
			_, c0 := p.cpu()
			defer func() { _, c1 := p.cpu(); deployCPU += c1 - c0 }()
			for range n {
				v++
				if err := commits.move(v); err != nil {
					return err
				}
				t := time.Now()
				d := r.push(s, shas[v-1], shas[v])
				if d.err != nil {
					return d.err
				}
				answers = append(answers, d.elapsed)
				if _, err := waitLive(s.path, shas[v], time.Minute); err != nil {
					return err
				}
				times = append(times, time.Since(t))
			}
			return nil
		}
	}
	pause := func(d time.Duration) func() error { return func() error { time.Sleep(d); return nil } }

	url := s.url("/index.html")
	r.logf("serve: Go client, %d connections: %d cycles of %d deploys then a baseline as long", conns, cycles, deploys/cycles)
	if _, err := goLoad(url, conns, versions.has, pause(300*time.Millisecond)); err != nil { // warm-up
		return err
	}
	var dep, base loadResult
	var depCPU, baseCPU cpuTimes
	var depSelf, baseSelf time.Duration
	for range cycles {
		m0, s0 := machineCPU(), first(p.cpu())
		d, err := goLoad(url, conns, versions.has, deployRun(deploys/cycles))
		if err != nil {
			return err
		}
		m1, s1 := machineCPU(), first(p.cpu())
		b, err := goLoad(url, conns, versions.has, pause(d.elapsed))
		if err != nil {
			return err
		}
		m2, s2 := machineCPU(), first(p.cpu())
		depCPU, baseCPU = depCPU.add(m1.sub(m0)), baseCPU.add(m2.sub(m1))
		depSelf, baseSelf = depSelf+s1-s0, baseSelf+s2-s1
		dep.merge(d)
		base.merge(b)
	}
	slices.Sort(dep.lat)
	slices.Sort(base.lat)
	ratio := dep.rps() / base.rps()
	errs, bad, reqs := dep.errs+base.errs, dep.bad+base.bad, dep.reqs+base.reqs
	firstErr := dep.firstErr + base.firstErr
	if firstErr == "" {
		firstErr = "none"
	}
	r.rep.info("site", fmt.Sprintf("%d files, no build; GET /index.html (4–9 KiB, a new version per deploy)", nfiles))
	r.rep.info("deploys under load (delivery → live)", fmt.Sprintf("%d back to back in %d runs; median %v, max %v",
		len(times), cycles, median(times), roundDur(slices.Max(times))))
	r.rep.info(fmt.Sprintf("Go client (%d conns): req/s baseline / during deploys", conns),
		fmt.Sprintf("%.0f / %.0f (%v each)", base.rps(), dep.rps(), dep.elapsed.Round(time.Millisecond)))
	r.rep.info("Go client: latency p50 / p99, baseline vs during deploys",
		fmt.Sprintf("%v / %v vs %v / %v", pct(base.lat, 50), pct(base.lat, 99), pct(dep.lat, 50), pct(dep.lat, 99)))
	r.rep.info("CPU time of the deploys' git processes", fmt.Sprintf("%v, %.0f%% of the %d cores' time while deploying",
		deployCPU.Round(10*time.Millisecond), 100*deployCPU.Seconds()/(float64(runtime.NumCPU())*dep.elapsed.Seconds()), runtime.NumCPU()))
	r.rep.info("machine CPU idle, baseline / during deploys; Caddy's own CPU (cores)", fmt.Sprintf("%.0f%% / %.0f%%; %.2f / %.2f",
		baseCPU.idlePct(), depCPU.idlePct(), baseSelf.Seconds()/base.elapsed.Seconds(), depSelf.Seconds()/dep.elapsed.Seconds()))
	r.rep.check("Go client: errors (transport or non-200)", fmt.Sprintf("%d of %d (first: %s)", errs, reqs, firstErr), "0", errs == 0)
	r.rep.check("Go client: bodies not exactly one committed version", fmt.Sprintf("%d of %d", bad, reqs), "0", bad == 0)
	r.rep.perf("Go client: throughput during deploys / baseline", fmt.Sprintf("%.1f%%", 100*ratio), "≥ 90%", ratio >= 0.9)

	if !r.wrk {
		r.rep.info("wrk", "not installed: skipped")
		r.answers(answers)
		return nil
	}
	r.logf("serve: wrk: %d cycles of %d deploys then a baseline as long", cycles, deploys/cycles)
	before := len(times)
	var wd, wb wrkResult
	for range cycles {
		d, err := runWrk(url, deployRun(deploys/cycles))
		if err != nil {
			return err
		}
		b, err := runWrk(url, pause(d.elapsed))
		if err != nil {
			return err
		}
		wd.merge(d)
		wb.merge(b)
	}
	r.answers(answers)
	wratio := wd.rps() / wb.rps()
	werrs := wd.errors + wb.errors
	r.rep.info("wrk (2 threads, 32 conns): req/s baseline / during deploys",
		fmt.Sprintf("%.0f / %.0f (%d deploys in %v)", wb.rps(), wd.rps(), len(times)-before, wd.elapsed.Round(time.Millisecond)))
	r.rep.info("wrk: latency p99 (worst run), baseline vs during deploys", fmt.Sprintf("%v vs %v", roundDur(wb.p99), roundDur(wd.p99)))
	r.rep.check("wrk: errors (socket errors, non-2xx)", fmt.Sprintf("%d of %d", werrs, wd.reqs+wb.reqs), "0", werrs == 0)
	r.rep.perf("wrk: throughput during deploys / baseline", fmt.Sprintf("%.1f%%", 100*wratio), "≥ 90%", wratio >= 0.9)
	return nil
}

// first returns the first of two values.
func first[T any](a, _ T) T { return a }

// answers reports how long the deploys' own deliveries waited for their
// 202 while the deploys before them ran and the site was under load.
func (r *run) answers(d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	p99 := pct(d, 99)
	r.rep.perf("delivery → 202 during deploys under load: p50 / p99 / max", fmt.Sprintf("%v / %v / %v (%d deliveries)",
		pct(d, 50), p99, roundDur(d[len(d)-1]), len(d)), "p99 < 5 ms", p99 < 5*time.Millisecond)
}
