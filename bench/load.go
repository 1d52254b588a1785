package main

import (
	"bytes"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// loadResult is what a Go load run saw.
type loadResult struct {
	reqs, errs, bad int64
	elapsed         time.Duration
	lat             []time.Duration
	firstErr        string
}

func (l loadResult) rps() float64 { return float64(l.reqs) / l.elapsed.Seconds() }

func (l *loadResult) merge(o loadResult) {
	l.reqs, l.errs, l.bad, l.elapsed = l.reqs+o.reqs, l.errs+o.errs, l.bad+o.bad, l.elapsed+o.elapsed
	l.lat = append(l.lat, o.lat...)
	if l.firstErr == "" {
		l.firstErr = o.firstErr
	}
}

// goLoad GETs url on conns keep-alive connections, each in a loop, for as
// long as during runs; every body must pass check.
func goLoad(url string, conns int, check func([]byte) bool, during func() error) (loadResult, error) {
	var (
		stop atomic.Bool
		wg   sync.WaitGroup
		mu   sync.Mutex
		res  loadResult
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if res.firstErr == "" {
			res.firstErr = fmt.Sprintf(format, args...)
		}
	}
	start := time.Now()
	for range conns {
		wg.Go(func() {
			var mine loadResult
			for !stop.Load() {
				t := time.Now()
				status, body, err := get(url)
				mine.lat = append(mine.lat, time.Since(t))
				mine.reqs++
				switch {
				case err != nil || status != 200:
					mine.errs++
					fail("status %d, %v", status, err)
				case !check(body):
					mine.bad++
					fail("unexpected body of %d bytes: %.80q", len(body), body)
				}
			}
			mu.Lock()
			res.merge(mine)
			mu.Unlock()
		})
	}
	err := during()
	stop.Store(true)
	wg.Wait()
	res.elapsed = time.Since(start)
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
	w.reqs, w.errors, w.elapsed, w.p99 = w.reqs+o.reqs, w.errors+o.errors, w.elapsed+o.elapsed, max(w.p99, o.p99)
}

var (
	wrkReqs   = regexp.MustCompile(`(\d+) requests in ([0-9.]+[a-z]+)`)
	wrkErrors = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)|Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
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
	m := wrkReqs.FindStringSubmatch(out.String())
	if m == nil {
		return wrkResult{}, fmt.Errorf("unexpected wrk output: %s", out.String())
	}
	var res wrkResult
	res.reqs, _ = strconv.ParseInt(m[1], 10, 64)
	res.elapsed, _ = time.ParseDuration(m[2])
	for _, m := range wrkErrors.FindAllStringSubmatch(out.String(), -1) {
		for _, n := range m[1:] {
			v, _ := strconv.ParseInt(n, 10, 64)
			res.errors += v
		}
	}
	if m := wrkP99.FindStringSubmatch(out.String()); m != nil {
		res.p99, _ = time.ParseDuration(m[1])
	}
	return res, derr
}

// pct returns the p-th percentile of sorted durations.
func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := min(max((len(sorted)*p+99)/100-1, 0), len(sorted)-1)
	return roundDur(sorted[i])
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return pct(s, 50)
}

// triple is the median, p90 and maximum of sorted durations.
func triple(sorted []time.Duration) string {
	return fmt.Sprintf("%v / %v / %v", pct(sorted, 50), pct(sorted, 90), pct(sorted, 100))
}

// roundDur keeps three significant digits or so.
func roundDur(d time.Duration) time.Duration {
	for unit := 100 * time.Second; unit >= 10*time.Microsecond; unit /= 10 {
		if d >= unit {
			return d.Round(unit / 100)
		}
	}
	return d.Round(time.Microsecond)
}
