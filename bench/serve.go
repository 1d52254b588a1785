package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// serve measures the site under load while deploys run back to back, against
// a baseline without deploys in the same run (one before, one after).
func (r *run) serve() error {
	const scn = "1. serving while deploying"
	deploys, cycles, nfiles, conns := 20, 4, 200, 16
	if r.short {
		deploys, cycles, nfiles = 5, 1, 50
	}
	versions := &versionSet{}
	versions.add(0, plainIndex(0))
	tb, err := r.newTestbed("serve", plainSite(nfiles), nil)
	if err != nil {
		return err
	}
	defer tb.caddy.stop()
	repo, s, p, prev := tb.repo, tb.site, tb.caddy, tb.first
	ctx := context.Background()

	// The commits are made before the measurement, so that the harness's own
	// git work does not weigh on it: each deploy moves the remote branch to
	// the next one (a push without the transfer), delivers it, waits until
	// it is live, and at once goes on with the next.
	total := deploys
	if r.wrk {
		total *= 2
	}
	shas, err := repo.stage(prev, total, func(i int) map[string][]byte {
		body := plainIndex(i)
		versions.add(i, body)
		return map[string][]byte{"index.html": body}
	})
	if err != nil {
		return err
	}
	refs, err := repo.refUpdater()
	if err != nil {
		return err
	}
	defer refs.close()
	v := 0
	var times []time.Duration
	deployRun := func(n int) func() error {
		return func() error {
			for range n {
				v++
				t0 := time.Now()
				if err := refs.set("refs/heads/"+benchBranch, shas[v]); err != nil {
					return err
				}
				t := time.Now()
				d := r.pushDelivery(s, shas[v-1], shas[v])
				if d.err != nil {
					return d.err
				}
				if _, err := waitLive(ctx, s.path, shas[v], 60*time.Second); err != nil {
					return err
				}
				times = append(times, time.Since(t))
				if r.verbose {
					r.logf("deploy %d: ref %v, 202 in %v, live after %v", v, t.Sub(t0), d.elapsed, time.Since(t))
				}
			}
			return nil
		}
	}
	sleep := func(d time.Duration) func() error { return func() error { time.Sleep(d); return nil } }
	// What deploys cost the machine: the CPU time of Caddy's children (git).
	var deployCPU time.Duration
	deployRun0 := deployRun
	deployRun = func(n int) func() error {
		f := deployRun0(n)
		return func() error {
			_, c0 := p.cpu()
			err := f()
			_, c1 := p.cpu()
			deployCPU += c1 - c0
			return err
		}
	}

	// Deploys and baselines alternate, a few deploys then as long without,
	// so that whatever else the machine does weighs on both alike.
	url := s.url("/index.html")
	r.logf("serve: Go client, %d connections: %d cycles of %d deploys then a baseline as long", conns, cycles, deploys/cycles)
	if _, err := goLoad(url, conns, versions.has, sleep(300*time.Millisecond)); err != nil { // warm-up
		return err
	}
	var dep, base loadResult
	var depCPU, baseCPU, depSelf, baseSelf = cpuTimes{}, cpuTimes{}, time.Duration(0), time.Duration(0)
	for range cycles {
		m0 := machineCPU()
		s0, _ := p.cpu()
		d, err := goLoad(url, conns, versions.has, deployRun(deploys/cycles))
		if err != nil {
			return err
		}
		m1 := machineCPU()
		s1, _ := p.cpu()
		b, err := goLoad(url, conns, versions.has, sleep(d.elapsed))
		if err != nil {
			return err
		}
		m2 := machineCPU()
		s2, _ := p.cpu()
		depCPU, baseCPU = depCPU.add(m1.sub(m0)), baseCPU.add(m2.sub(m1))
		depSelf, baseSelf = depSelf+s1-s0, baseSelf+s2-s1
		dep.merge(d)
		base.merge(b)
	}
	slices.Sort(dep.lat)
	slices.Sort(base.lat)
	ratio := dep.rps() / base.rps()
	errs, bad := dep.errs+base.errs, dep.bad+base.bad
	r.rep.info(scn, "site", fmt.Sprintf("%d files, no build; GET /index.html (4–9 KiB, a new version per deploy)", nfiles))
	r.rep.info(scn, "deploys under load (delivery → live)", fmt.Sprintf("%d back to back in %d runs; median %v, max %v",
		len(times), cycles, median(times), roundDur(slices.Max(times))))
	r.rep.info(scn, fmt.Sprintf("Go client (%d conns): req/s baseline / during deploys", conns),
		fmt.Sprintf("%.0f / %.0f (%v each)", base.rps(), dep.rps(), dep.elapsed.Round(time.Millisecond)))
	r.rep.info(scn, "Go client: latency p50 / p99, baseline vs during deploys",
		fmt.Sprintf("%v / %v vs %v / %v", pct(base.lat, 50), pct(base.lat, 99), pct(dep.lat, 50), pct(dep.lat, 99)))
	r.rep.info(scn, "CPU time of the deploys' git processes", fmt.Sprintf("%v, %.0f%% of the 2 cores' time while deploying",
		deployCPU.Round(10*time.Millisecond), 100*deployCPU.Seconds()/(float64(runtime.NumCPU())*dep.elapsed.Seconds())))
	r.rep.info(scn, "machine CPU idle, baseline / during deploys; Caddy's own CPU (cores)", fmt.Sprintf("%.0f%% / %.0f%%; %.2f / %.2f",
		baseCPU.idlePct(), depCPU.idlePct(), baseSelf.Seconds()/base.elapsed.Seconds(), depSelf.Seconds()/dep.elapsed.Seconds()))
	r.rep.check(scn, "Go client: errors (transport or non-200)", fmt.Sprintf("%d of %d (first: %s)", errs, dep.reqs+base.reqs, firstOf(dep.firstErr, base.firstErr)), "0", errs == 0)
	r.rep.check(scn, "Go client: bodies not exactly one committed version", fmt.Sprintf("%d of %d", bad, dep.reqs+base.reqs), "0", bad == 0)
	r.rep.perf(scn, "Go client: throughput during deploys / baseline", fmt.Sprintf("%.1f%%", 100*ratio), "≥ 90%", ratio >= 0.9)

	if !r.wrk {
		r.rep.info(scn, "wrk", "not installed: skipped")
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
		b, err := runWrk(url, sleep(d.elapsed))
		if err != nil {
			return err
		}
		wd.merge(d)
		wb.merge(b)
	}
	wratio := wd.rps() / wb.rps()
	werrs := wd.errors + wb.errors
	r.rep.info(scn, "wrk (2 threads, 32 conns): req/s baseline / during deploys",
		fmt.Sprintf("%.0f / %.0f (%d deploys in %v)", wb.rps(), wd.rps(), len(times)-before, wd.elapsed.Round(time.Millisecond)))
	r.rep.info(scn, "wrk: latency p99 (worst run), baseline vs during deploys", fmt.Sprintf("%v vs %v", roundDur(wb.p99), roundDur(wd.p99)))
	r.rep.check(scn, "wrk: errors (socket errors, non-2xx)", fmt.Sprintf("%d of %d", werrs, wd.reqs+wb.reqs), "0", werrs == 0)
	r.rep.perf(scn, "wrk: throughput during deploys / baseline", fmt.Sprintf("%.1f%%", 100*wratio), "≥ 90%", wratio >= 0.9)
	return nil
}

// loadResult is what a Go load run saw.
type loadResult struct {
	reqs, errs, bad int64
	elapsed         time.Duration
	lat             []time.Duration
	firstErr        string
}

func (l loadResult) rps() float64 { return float64(l.reqs) / l.elapsed.Seconds() }

func (l *loadResult) merge(o loadResult) {
	l.reqs += o.reqs
	l.errs += o.errs
	l.bad += o.bad
	l.elapsed += o.elapsed
	l.lat = append(l.lat, o.lat...)
	if l.firstErr == "" {
		l.firstErr = o.firstErr
	}
}

// goLoad GETs url on conns keep-alive connections, each in a loop, for as
// long as during runs; every body must pass check.
func goLoad(url string, conns int, check func([]byte) bool, during func() error) (loadResult, error) {
	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		mu       sync.Mutex
		res      loadResult
		firstErr string
	)
	start := time.Now()
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var reqs, errs, bad int64
			lat := make([]time.Duration, 0, 1<<16)
			for !stop.Load() {
				t := time.Now()
				status, body, err := get(url)
				lat = append(lat, time.Since(t))
				reqs++
				switch {
				case err != nil || status != 200:
					errs++
					mu.Lock()
					if firstErr == "" {
						if err != nil {
							firstErr = err.Error()
						} else {
							firstErr = fmt.Sprintf("status %d", status)
						}
					}
					mu.Unlock()
				case !check(body):
					bad++
					mu.Lock()
					if firstErr == "" {
						firstErr = fmt.Sprintf("unexpected body of %d bytes: %.80q", len(body), body)
					}
					mu.Unlock()
				}
			}
			mu.Lock()
			res.reqs += reqs
			res.errs += errs
			res.bad += bad
			res.lat = append(res.lat, lat...)
			mu.Unlock()
		}()
	}
	err := during()
	stop.Store(true)
	wg.Wait()
	res.elapsed = time.Since(start)
	res.firstErr = firstErr
	slices.Sort(res.lat)
	return res, err
}

// wrkResult is what wrk reported.
type wrkResult struct {
	reqs    int64
	errors  int64         // socket errors and non-2xx/3xx responses
	p99     time.Duration // the worst of merged runs
	elapsed time.Duration // as wrk measured it
}

func (w wrkResult) rps() float64 { return float64(w.reqs) / w.elapsed.Seconds() }

func (w *wrkResult) merge(o wrkResult) {
	w.reqs += o.reqs
	w.errors += o.errors
	w.elapsed += o.elapsed
	w.p99 = max(w.p99, o.p99)
}

var (
	wrkReqs   = regexp.MustCompile(`(\d+) requests in ([0-9.]+[a-z]+)`)
	wrkNon2xx = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkSock   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkP99    = regexp.MustCompile(`\s99%\s+([0-9.]+[a-z]+)`)
)

// runWrk runs wrk against url for as long as during runs (wrk prints its
// summary on SIGINT).
func runWrk(url string, during func() error) (wrkResult, error) {
	cmd := exec.Command("wrk", "-t2", "-c32", "-d600s", "--latency", url)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return wrkResult{}, fmt.Errorf("starting wrk: %w", err)
	}
	time.Sleep(50 * time.Millisecond) // let wrk connect
	derr := during()
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		return wrkResult{}, fmt.Errorf("wrk did not stop: %s", out.String())
	}
	var res wrkResult
	o := out.String()
	m := wrkReqs.FindStringSubmatch(o)
	if m == nil {
		return res, fmt.Errorf("unexpected wrk output: %s", o)
	}
	res.reqs, _ = strconv.ParseInt(m[1], 10, 64)
	res.elapsed, _ = time.ParseDuration(m[2])
	if m := wrkNon2xx.FindStringSubmatch(o); m != nil {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		res.errors += n
	}
	if m := wrkSock.FindStringSubmatch(o); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			res.errors += n
		}
	}
	if m := wrkP99.FindStringSubmatch(o); m != nil {
		res.p99, _ = time.ParseDuration(m[1])
	}
	return res, derr
}

// pct returns the p-th percentile of sorted durations.
func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	i = min(max(i-1, 0), len(sorted)-1)
	return roundDur(sorted[i])
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return pct(s, 50)
}

// roundDur keeps three significant digits or so.
func roundDur(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond)
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}

func firstOf(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return "none"
}
