package deployer

import (
	"context"
	"time"
)

// A Gate decides whether a commit may go live, before it is built: have its
// checks passed, say. It is asked only about the branch's tip, with the
// deploy's context, and must return when that ends.
type Gate func(ctx context.Context, commit string) (GateResult, error)

// GateVerdict is what a Gate says of a commit.
type GateVerdict int

// Verdicts of a Gate. The zero value waits: a result left unset never lets
// a commit through.
const (
	// GateWait: not yet (a check is still running). The tip waits, and
	// the worker asks again.
	GateWait GateVerdict = iota
	// GatePass: the commit may go live.
	GatePass
	// GateFail: the commit must not go live. It is not asked about again
	// until a wake for checks, a delivery or a manual deploy.
	GateFail
)

// GateResult is a Gate's answer.
type GateResult struct {
	Verdict GateVerdict
	// Detail says why the commit waits or failed, on one line, for
	// Status.Checked: `check run "CI" is in_progress`.
	Detail string
}

// How the worker looks again at a tip the gate holds back (it waits, or
// the gate could not answer): on its own, after gateBase, doubling up to
// gateMax, for at most gateFor per tip; on every wake in any case.
const (
	gateBase = 15 * time.Second
	gateMax  = 5 * time.Minute
	gateFor  = 2 * time.Hour
)

// gateWait is returned by deploy when the gate held the tip back and the
// worker should ask again on its own.
type gateWait struct{ commit string }

func (e *gateWait) Error() string { return "waiting for the gate on " + short(e.commit) }

// gateFailure is the last commit the gate failed, and why.
type gateFailure struct {
	commit, detail string
}

// gateBackoff is the worker's own schedule of looks at a tip the gate holds
// back. It belongs to the worker goroutine.
type gateBackoff struct {
	timer *time.Timer
	C     <-chan time.Time
	tip   string
	since time.Time
	tries int
}

// stop cancels the next look.
func (b *gateBackoff) stop() {
	if b.timer != nil {
		b.timer.Stop()
	}
	b.timer, b.C = nil, nil
}

// next schedules the next look at tip, now being the time of the last one,
// and returns how long until it; false when tip has waited limit already.
func (b *gateBackoff) next(tip string, now time.Time, base, maxWait, limit time.Duration) (time.Duration, bool) {
	b.stop()
	if tip != b.tip {
		b.tip, b.since, b.tries = tip, now, 0
	}
	if now.Sub(b.since) >= limit {
		return 0, false
	}
	b.tries++
	wait := base << min(b.tries-1, 16)
	if wait > maxWait || wait <= 0 {
		wait = maxWait
	}
	b.timer = time.NewTimer(wait)
	b.C = b.timer.C
	return wait, true
}
