package deployer

import (
	"errors"
	"testing"
)

// tipPolicy, the one answer that a single node and a group's node both ask
// about the branch's tip, for every fact that holds a tip back and every
// reason a wake has.
func TestTipPolicy(t *testing.T) {
	const tip, other = "c0ffee", "dead00"
	pass := &gateAnswer{res: GateResult{Verdict: GatePass}}
	fail := &gateAnswer{res: GateResult{Verdict: GateFail, Detail: `check run "CI" failed: failure`}}
	wait := &gateAnswer{res: GateResult{Verdict: GateWait, Detail: `check run "CI" is in_progress`}}
	unset := &gateAnswer{} // a gate that left its verdict unset waits
	broken := &gateAnswer{err: errors.New("500 Internal Server Error")}
	failedBefore := gateFailure{commit: tip, detail: `check run "CI" failed: failure`}

	for _, tc := range []struct {
		name string
		f    tipFacts
		want tipDecision
	}{
		{"nothing holds it", tipFacts{reason: ReasonPoll}, tipDecision{action: tipBuild}},
		{"another commit live", tipFacts{reason: ReasonPoll, live: other, pinnedFrom: other, failed: other}, tipDecision{action: tipBuild}},
		{"live", tipFacts{reason: ReasonPoll, live: tip}, tipDecision{action: tipLive, outcome: OutcomeLive}},
		{"live, manual", tipFacts{reason: ReasonManual, live: tip, failed: tip}, tipDecision{action: tipLive, outcome: OutcomeLive}},

		{"rolled back from, poll", tipFacts{reason: ReasonPoll, pinnedFrom: tip},
			tipDecision{action: tipSkip, outcome: OutcomeWaiting, detail: "rolled back from"}},
		{"rolled back from, start", tipFacts{reason: ReasonStartup, pinnedFrom: tip},
			tipDecision{action: tipSkip, outcome: OutcomeWaiting, detail: "rolled back from"}},
		{"rolled back from, checks", tipFacts{reason: ReasonChecks, pinnedFrom: tip},
			tipDecision{action: tipSkip, outcome: OutcomeWaiting, detail: "rolled back from"}},
		{"rolled back from, delivery", tipFacts{reason: ReasonDelivery, pinnedFrom: tip}, tipDecision{action: tipBuild}},
		{"rolled back from, manual", tipFacts{reason: ReasonManual, pinnedFrom: tip}, tipDecision{action: tipBuild}},
		{"rolled back from and failed since", tipFacts{reason: ReasonPoll, pinnedFrom: tip, failed: tip},
			tipDecision{action: tipSkip, outcome: OutcomeWaiting, detail: "rolled back from"}},

		{"failed before, poll", tipFacts{reason: ReasonPoll, failed: tip},
			tipDecision{action: tipSkip, outcome: OutcomeWaiting, detail: "failed before"}},
		{"failed before, checks", tipFacts{reason: ReasonChecks, failed: tip, gated: true, answer: pass},
			tipDecision{action: tipSkip, outcome: OutcomeWaiting, detail: "failed before"}},
		{"failed before, delivery", tipFacts{reason: ReasonDelivery, failed: tip}, tipDecision{action: tipBuild}},

		{"gated, not asked", tipFacts{reason: ReasonPoll, gated: true}, tipDecision{action: tipAskGate}},
		{"gated, pass", tipFacts{reason: ReasonPoll, gated: true, answer: pass}, tipDecision{action: tipBuild}},
		{"gated, fail", tipFacts{reason: ReasonPoll, gated: true, answer: fail},
			tipDecision{action: tipSkip, outcome: OutcomeChecksFailed, detail: `check run "CI" failed: failure`}},
		{"gated, wait", tipFacts{reason: ReasonPoll, gated: true, answer: wait},
			tipDecision{action: tipWait, outcome: OutcomeWaiting, detail: `check run "CI" is in_progress`}},
		{"gated, verdict unset", tipFacts{reason: ReasonPoll, gated: true, answer: unset},
			tipDecision{action: tipWait, outcome: OutcomeWaiting}},
		{"gated, cannot answer", tipFacts{reason: ReasonPoll, gated: true, answer: broken},
			tipDecision{action: tipWait, outcome: OutcomeWaiting, detail: "checks unknown: 500 Internal Server Error"}},
		{"checks failed before, poll", tipFacts{reason: ReasonPoll, gated: true, checksFailed: failedBefore},
			tipDecision{action: tipSkip, outcome: OutcomeChecksFailed, detail: failedBefore.detail}},
		{"checks failed before, start", tipFacts{reason: ReasonStartup, gated: true, checksFailed: failedBefore},
			tipDecision{action: tipSkip, outcome: OutcomeChecksFailed, detail: failedBefore.detail}},
		{"checks failed before, checks wake", tipFacts{reason: ReasonChecks, gated: true, checksFailed: failedBefore},
			tipDecision{action: tipAskGate}},
		{"checks failed before, delivery", tipFacts{reason: ReasonDelivery, gated: true, checksFailed: failedBefore},
			tipDecision{action: tipAskGate}},
		{"another commit's checks failed", tipFacts{reason: ReasonPoll, gated: true, checksFailed: gateFailure{commit: other}},
			tipDecision{action: tipAskGate}},
		{"not gated, checks failed before", tipFacts{reason: ReasonPoll, checksFailed: failedBefore}, tipDecision{action: tipBuild}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.f.tip = tip
			if got := tipPolicy(tc.f); got != tc.want {
				t.Errorf("tipPolicy(%+v) = %+v, want %+v", tc.f, got, tc.want)
			}
		})
	}
}
