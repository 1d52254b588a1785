package deployer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// fakeChecks stands in for a commit's checks on GitHub: each commit's
// verdict as the test sets it, and the commits asked about, in order.
type fakeChecks struct {
	mu       sync.Mutex
	verdicts map[string]GateResult
	errs     int // the next errs calls fail, as an API that is down
	asked    []string
}

func newFakeChecks() *fakeChecks { return &fakeChecks{verdicts: map[string]GateResult{}} }

func (f *fakeChecks) set(commit string, v GateVerdict, detail string) {
	f.mu.Lock()
	f.verdicts[commit] = GateResult{Verdict: v, Detail: detail}
	f.mu.Unlock()
}

func (f *fakeChecks) failNext(n int) {
	f.mu.Lock()
	f.errs = n
	f.mu.Unlock()
}

func (f *fakeChecks) gate(ctx context.Context, commit string) (GateResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, commit)
	if f.errs > 0 {
		f.errs--
		return GateResult{}, errors.New("GET /repos/{owner}/{repo}/commits/{ref}/check-runs: 500 Internal Server Error")
	}
	v, ok := f.verdicts[commit]
	if !ok {
		return GateResult{Verdict: GateWait, Detail: "no checks reported yet"}, nil
	}
	return v, nil
}

func (f *fakeChecks) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.asked)
}

// startGated starts a deployer of cfg whose gate is checks, with its own
// backoff shortened to base (doubling, capped at 4×base) for limit.
func startGated(t *testing.T, cfg Config, checks *fakeChecks, base, limit time.Duration) *target {
	t.Helper()
	cfg.Path = filepath.Join(t.TempDir(), "site")
	ev := &events{}
	cfg.Notify = ev.notify
	cfg.Gate = checks.gate
	core, logs := observer.New(zapcore.DebugLevel)
	d, err := New(cfg, zap.New(core), withGateBackoff(base, 4*base, limit))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	tg := &target{Deployer: d, t: t, events: ev, logs: logs}
	t.Cleanup(tg.close)
	return tg
}

// waitOutcome waits for a handled wake whose outcome is outcome.
func (tg *target) waitOutcome(outcome string) Checked {
	tg.t.Helper()
	var c *Checked
	waitFor(tg.t, "a wake with outcome "+outcome, func() bool {
		c = tg.Status().Checked
		return c != nil && c.Outcome == outcome
	})
	return *c
}

// A tip whose checks are pending is not built: only the placeholder page is
// served, the status says which check it waits for; once they pass, a wake
// for checks deploys it.
func TestGateHoldsPendingTip(t *testing.T) {
	r := newRemote(t)
	tip := r.commit(map[string]string{"index.html": "v1"})
	checks := newFakeChecks()
	checks.set(tip, GateWait, `check run "CI" is in_progress`)
	tg := startGated(t, Config{Remote: r.bare}, checks, time.Hour, 2*time.Hour)

	c := tg.waitChecked(0)
	if c.Outcome != OutcomeWaiting || c.Commit != tip || c.Detail != `check run "CI" is in_progress` {
		t.Fatalf("checked = %+v, want waiting on CI for %s", c, short(tip))
	}
	if link, _ := os.Readlink(filepath.Join(tg.path, "current")); link != "placeholder" {
		t.Errorf("current -> %q while the only commit's checks are pending, want the placeholder page", link)
	}
	if n := tg.events.count(EventStarted); n != 0 {
		t.Errorf("%d deploys started while the checks were pending", n)
	}

	checks.set(tip, GatePass, "checks passed")
	tg.Wake(ReasonChecks)
	tg.waitLive(tip)
	if got := readCurrent(t, tg.path, "index.html"); got != "v1" {
		t.Errorf("served %q, want v1", got)
	}
	if c := tg.waitChecked(c.Count); c.Outcome != OutcomeDeployed || c.Reason != ReasonChecks {
		t.Errorf("checked = %+v, want deployed for checks", c)
	}
}

// A tip whose checks failed stays off the site; the status names the check
// and the commit. Poll leaves it alone without asking again; a wake for
// checks asks again, and deploys it once the check passed on a re-run.
func TestGateFailedTipStaysOff(t *testing.T) {
	r := newRemote(t)
	first := r.commit(map[string]string{"index.html": "v1"})
	checks := newFakeChecks()
	checks.set(first, GatePass, "checks passed")
	tg := startGated(t, Config{Remote: r.bare}, checks, time.Hour, 2*time.Hour)
	tg.waitLive(first)
	c0 := tg.waitChecked(0)

	second := r.commit(map[string]string{"index.html": "v2"})
	checks.set(second, GateFail, `check run "CI" failed: failure`)
	tg.Wake(ReasonDelivery)
	c := tg.waitChecked(c0.Count)
	if c.Outcome != OutcomeChecksFailed || c.Commit != second || c.Detail != `check run "CI" failed: failure` {
		t.Fatalf("checked = %+v, want checks_failed on CI for %s", c, short(second))
	}
	if got := readCurrent(t, tg.path, "index.html"); got != "v1" {
		t.Errorf("served %q after the tip's checks failed, want v1", got)
	}

	asked := len(checks.calls())
	tg.Wake(ReasonPoll)
	c = tg.waitChecked(c.Count)
	if c.Outcome != OutcomeChecksFailed || c.Commit != second || c.Detail != `check run "CI" failed: failure` {
		t.Errorf("poll: checked = %+v, want checks_failed", c)
	}
	if n := len(checks.calls()); n != asked {
		t.Errorf("poll asked the gate again about a failed tip (%d calls, want %d)", n, asked)
	}

	checks.set(second, GatePass, "checks passed")
	tg.Wake(ReasonChecks)
	tg.waitLive(second)
	if got := readCurrent(t, tg.path, "index.html"); got != "v2" {
		t.Errorf("served %q, want v2", got)
	}
}

// When the gate cannot answer (GitHub's API is down), the tip waits and is
// never deployed unchecked; the deployer asks again on its own backoff,
// without a wake, and deploys once the answer is a pass.
func TestGateErrorWaitsAndRetries(t *testing.T) {
	r := newRemote(t)
	tip := r.commit(map[string]string{"index.html": "v1"})
	checks := newFakeChecks()
	checks.set(tip, GatePass, "checks passed")
	checks.failNext(3)
	tg := startGated(t, Config{Remote: r.bare}, checks, 20*time.Millisecond, time.Hour)

	c := tg.waitChecked(0)
	if c.Outcome != OutcomeWaiting || c.Commit != tip ||
		c.Detail != "checks unknown: GET /repos/{owner}/{repo}/commits/{ref}/check-runs: 500 Internal Server Error" {
		t.Fatalf("checked = %+v, want waiting: checks unknown", c)
	}
	tg.waitLive(tip)
	asked := checks.calls()
	if len(asked) != 4 {
		t.Errorf("gate asked %d times, want 4 (3 errors, then a pass)", len(asked))
	}
	if ev, _ := tg.events.last(EventStarted); tg.events.count(EventStarted) != 1 || ev.Reason != ReasonRetry {
		t.Errorf("deploys started: %d (last %+v), want one, on the deployer's own retry", tg.events.count(EventStarted), ev)
	}
}

// Only the tip is ever deployed: a commit whose checks pass after a newer
// one was pushed is not, and the newer one goes live once its own pass.
func TestGateOnlyTheTip(t *testing.T) {
	r := newRemote(t)
	older := r.commit(map[string]string{"index.html": "v1"})
	checks := newFakeChecks()
	tg := startGated(t, Config{Remote: r.bare}, checks, time.Hour, 2*time.Hour)
	c := tg.waitChecked(0)
	if c.Outcome != OutcomeWaiting || c.Commit != older {
		t.Fatalf("checked = %+v, want waiting for %s", c, short(older))
	}

	newer := r.commit(map[string]string{"index.html": "v2"})
	checks.set(older, GatePass, "checks passed")
	tg.Wake(ReasonChecks)
	c = tg.waitChecked(c.Count)
	if c.Outcome != OutcomeWaiting || c.Commit != newer {
		t.Fatalf("checked = %+v, want the newer tip %s waiting", c, short(newer))
	}

	checks.set(newer, GatePass, "checks passed")
	tg.Wake(ReasonChecks)
	tg.waitLive(newer)
	tg.events.mu.Lock()
	defer tg.events.mu.Unlock()
	for _, ev := range tg.events.all {
		if ev.Commit == older && ev.Kind != EventRecovered {
			t.Errorf("older commit %s, whose checks passed after a newer push, was deployed: %+v", short(older), ev)
		}
	}
}

// A rollback pin and a failed build are left alone before the gate is
// asked; an explicit wake asks it again about a tip it failed.
func TestGateAfterFailedBuild(t *testing.T) {
	r := newRemote(t)
	tip := r.commit(map[string]string{"index.html": "v1"})
	checks := newFakeChecks()
	checks.set(tip, GatePass, "checks passed")
	tg := startGated(t, Config{Remote: r.bare, Commands: [][]string{{"false"}}}, checks, time.Hour, 2*time.Hour)
	c := tg.waitOutcome(OutcomeFailed)
	asked := len(checks.calls())

	tg.Wake(ReasonChecks) // a check completing does not retry a failed build
	c = tg.waitChecked(c.Count)
	if c.Outcome != OutcomeWaiting || c.Detail != "failed before" {
		t.Errorf("checks wake on a failed build: checked = %+v, want waiting: failed before", c)
	}
	if n := len(checks.calls()); n != asked {
		t.Errorf("the gate was asked about a tip whose build failed (%d calls, want %d)", n, asked)
	}
}

// Caddy stopping mid-build emits EventInterrupted for the commit, and no
// failure: the next start deploys it again.
func TestInterruptedEvent(t *testing.T) {
	r := newRemote(t)
	tip := r.commit(map[string]string{"index.html": "v1"})
	tg := start(t, Config{Remote: r.bare, Commands: [][]string{{"sleep", "60"}}})
	waitFor(t, "the build to run", func() bool {
		s := tg.Status()
		return s.Running != nil && s.Running.Commit == tip
	})
	tg.close()
	ev, ok := tg.events.last(EventInterrupted)
	if !ok || ev.Commit != tip || ev.Release == "" || ev.Path != tg.path {
		t.Fatalf("interrupted event = %+v (found %v), want one for %s", ev, ok, short(tip))
	}
	if n := tg.events.count(EventFailed); n != 0 {
		t.Errorf("%d failed events for an interrupted deploy", n)
	}
}

// The deployer's own looks at a held-back tip: 15 s doubling to 5 min, for
// at most 2 hours per tip; a new tip starts over.
func TestGateBackoffSchedule(t *testing.T) {
	var b gateBackoff
	defer b.stop()
	t0 := time.Unix(1_700_000_000, 0)
	var waits []time.Duration
	now := t0
	for {
		w, ok := b.next("a", now, gateBase, gateMax, gateFor)
		if !ok {
			break
		}
		waits = append(waits, w)
		now = now.Add(w)
	}
	want := []time.Duration{15 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute}
	if !slices.Equal(waits[:5], want) {
		t.Errorf("first waits %v, want %v", waits[:5], want)
	}
	for _, w := range waits[5:] {
		if w != gateMax {
			t.Errorf("wait %v after the fifth, want %v", w, gateMax)
		}
	}
	if total := now.Sub(t0); total < gateFor || total > gateFor+gateMax {
		t.Errorf("looked on its own for %v, want about %v", total, gateFor)
	}
	if w, ok := b.next("b", now, gateBase, gateMax, gateFor); !ok || w != gateBase {
		t.Errorf("a new tip waits %v (%v), want %v", w, ok, gateBase)
	}
}
