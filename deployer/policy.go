package deployer

import (
	"context"

	"go.uber.org/zap"
)

// tipPolicy is the one answer to "what now with the branch's tip?", asked
// by a single node (deployTip) and by a node of a group (groupCheck,
// deployGroupTip) alike. It reads no disk, storage or clock: the caller
// gathers tipFacts, acts on the tipDecision, asks the gate when told to and
// asks again with its answer.
//
// In order:
//  1. the tip is live: nothing to build (in a group, the node follows the
//     group's release);
//  2. the tip was rolled back from, and the wake is not explicit (a
//     delivery, a manual deploy): it waits;
//  3. the tip's build failed before, and the wake is not explicit: it waits;
//  4. with a gate: the gate failed the tip before, and the wake does not
//     ask again (explicit, or a check that completed): it waits, checks
//     failed; the gate was not asked yet: ask it; it could not answer or
//     says not yet: it waits and the worker asks again on its own; it
//     failed the tip: checks failed;
//  5. build.
func tipPolicy(f tipFacts) tipDecision {
	switch {
	case f.live != "" && f.live == f.tip:
		return tipDecision{action: tipLive, outcome: OutcomeLive}
	case !f.reason.explicit() && f.pinnedFrom != "" && f.pinnedFrom == f.tip:
		return tipDecision{action: tipSkip, outcome: OutcomeWaiting, detail: "rolled back from"}
	case !f.reason.explicit() && f.failed != "" && f.failed == f.tip:
		return tipDecision{action: tipSkip, outcome: OutcomeWaiting, detail: "failed before"}
	case !f.gated:
		return tipDecision{action: tipBuild}
	case f.checksFailed.commit == f.tip && !f.reason.rechecks():
		return tipDecision{action: tipSkip, outcome: OutcomeChecksFailed, detail: f.checksFailed.detail}
	case f.answer == nil:
		return tipDecision{action: tipAskGate}
	case f.answer.err != nil:
		// Nothing goes live unchecked: the tip waits until the gate can
		// answer.
		return tipDecision{action: tipWait, outcome: OutcomeWaiting, detail: "checks unknown: " + f.answer.err.Error()}
	case f.answer.res.Verdict == GatePass:
		return tipDecision{action: tipBuild}
	case f.answer.res.Verdict == GateFail:
		return tipDecision{action: tipSkip, outcome: OutcomeChecksFailed, detail: f.answer.res.Detail}
	}
	return tipDecision{action: tipWait, outcome: OutcomeWaiting, detail: f.answer.res.Detail}
}

// tipFacts is what tipPolicy decides on.
type tipFacts struct {
	tip    string
	reason Reason
	// live is the commit served: this node's live release, or in a group
	// the group's live record.
	live string
	// pinnedFrom is the commit a rollback moved away from: this node's
	// state, or in a group the group's live record.
	pinnedFrom string
	// failed is the last tip whose build failed on this node.
	failed string
	// gated says whether a gate decides what goes live; checksFailed is
	// the last commit it failed, answer its answer about tip once asked.
	gated        bool
	checksFailed gateFailure
	answer       *gateAnswer
}

// gateAnswer is what a Gate answered.
type gateAnswer struct {
	res GateResult
	err error
}

// tipAction is what tipPolicy tells the caller to do.
type tipAction int

const (
	// tipBuild: build the tip.
	tipBuild tipAction = iota
	// tipLive: the tip is live already.
	tipLive
	// tipSkip: leave the tip alone until a wake that asks again;
	// outcome and detail say why.
	tipSkip
	// tipWait: leave the tip alone, and ask again on the worker's own
	// backoff (the gate's answer may change); outcome and detail say why.
	tipWait
	// tipAskGate: ask the gate, then tipPolicy again with its answer.
	tipAskGate
)

// tipDecision is tipPolicy's answer.
type tipDecision struct {
	action  tipAction
	outcome string // an Outcome constant, for Status.Checked
	detail  string
}

// localFacts is what this node knows of tip: the commit of its live
// release, the pin and the failed build its state records, the gate's
// last failure.
func (d *Deployer) localFacts(cfg Config, reason Reason, tip string) tipFacts {
	live := liveRelease(d.path)
	d.mu.Lock()
	defer d.mu.Unlock()
	f := tipFacts{tip: tip, reason: reason, pinnedFrom: d.st.PinnedFrom, failed: d.st.FailedCommit,
		gated: cfg.Gate != nil, checksFailed: d.gateFailed}
	if r := d.st.find(live); r != nil {
		f.live = r.Commit
	}
	return f
}

// decide asks tipPolicy about f.tip, and cfg.Gate when the policy says
// so, logs what it decided and records the gate's verdict. build reports
// whether to build the tip; when not, c says why, and err is a *gateWait
// when the worker should ask again on its own backoff.
func (d *Deployer) decide(ctx context.Context, cfg Config, f tipFacts) (c Checked, build bool, err error) {
	dec := tipPolicy(f)
	if dec.action == tipAskGate {
		res, gerr := cfg.Gate(ctx, f.tip)
		if gerr != nil && d.ctx.Err() != nil {
			return Checked{Commit: f.tip, Outcome: OutcomeInterrupted}, false, nil
		}
		f.answer = &gateAnswer{res: res, err: gerr}
		dec = tipPolicy(f)
		d.mu.Lock()
		switch {
		case gerr != nil:
		case res.Verdict == GatePass && d.gateFailed.commit == f.tip:
			d.gateFailed = gateFailure{}
		case res.Verdict == GateFail:
			d.gateFailed = gateFailure{commit: f.tip, detail: res.Detail}
		}
		d.mu.Unlock()
	}
	c = Checked{Commit: f.tip, Outcome: dec.outcome, Detail: dec.detail}
	commit, reason := zap.String("commit", f.tip), zap.String("reason", string(f.reason))
	switch {
	case dec.action == tipBuild:
		return Checked{}, true, nil
	case dec.action == tipLive:
		d.log().Debug("tip is live", commit, reason)
	case dec.detail == "rolled back from":
		d.log().Info("tip was rolled back from; waiting for a new commit, a delivery or a manual deploy", commit, reason)
	case dec.detail == "failed before":
		d.log().Info("tip's build failed before; waiting for a new commit, a delivery or a manual deploy", commit, reason)
	case f.answer == nil: // the gate failed it before
		d.log().Info("tip's checks failed before; waiting for a new commit, a check that completed, a delivery or a manual deploy",
			commit, reason, zap.String("checks", dec.detail))
	case f.answer.err != nil:
		d.log().Warn("cannot tell whether the tip may go live; it waits", commit, zap.Error(f.answer.err))
	case dec.action == tipSkip:
		d.log().Warn("tip's checks failed: it is not deployed", commit, reason, zap.String("checks", dec.detail))
	default:
		d.log().Info("tip waits for its checks", commit, reason, zap.String("checks", dec.detail))
	}
	if dec.action == tipWait {
		err = &gateWait{f.tip}
	}
	return c, false, err
}
