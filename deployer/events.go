package deployer

import "time"

// Reason says what woke the deployer.
type Reason string

// Reasons a deploy starts. Delivery and Manual are explicit requests: they
// retry a tip whose build failed and deploy a commit that was rolled back from.
// Startup and Poll leave both alone until the branch moves.
const (
	ReasonStartup  Reason = "startup"
	ReasonDelivery Reason = "delivery"
	ReasonManual   Reason = "manual"
	ReasonPoll     Reason = "poll"
	ReasonRetry    Reason = "retry"
	// ReasonChecks: a check of the branch completed (Config.Gate may
	// answer otherwise now). It asks the gate again about a tip it failed,
	// but leaves a failed build and a rollback pin alone.
	ReasonChecks Reason = "checks"
	// ReasonGroup: the group's live record moved (Config.Cluster), and
	// this node followed it.
	ReasonGroup Reason = "group"
)

// explicit reports whether r is a request that must not be ignored because of
// a past failure or a rollback pin.
func (r Reason) explicit() bool { return r == ReasonDelivery || r == ReasonManual }

// rechecks reports whether r asks the gate again about a tip it failed.
func (r Reason) rechecks() bool { return r.explicit() || r == ReasonChecks }

// strength orders reasons for coalescing wakes: the strongest since the
// last deploy began is the one the next deploy runs for.
func (r Reason) strength() int {
	switch {
	case r.explicit():
		return 2
	case r == ReasonChecks:
		return 1
	}
	return 0
}

// EventKind names a deploy event.
type EventKind string

// Event kinds: a deploy emits EventStarted, then EventSucceeded or EventFailed
// (a failed fetch emits EventFailed alone).
const (
	EventStarted   EventKind = "deploy_started"
	EventSucceeded EventKind = "deploy_succeeded"
	EventFailed    EventKind = "deploy_failed"
	// EventRolledBack follows a Rollback: Commit and Release are live now.
	EventRolledBack EventKind = "rolled_back"
	// EventRecovered follows the recovery at Start when a release is live:
	// Commit and Release are live, At is when the last deploy succeeded
	// (zero if unknown).
	EventRecovered EventKind = "recovered"
	// EventInterrupted follows EventStarted when the deployer stopped
	// (Close) before the deploy ended: Commit was not deployed, and is
	// deployed again on the next start.
	EventInterrupted EventKind = "deploy_interrupted"
	// EventFollowed: this node switched to its group's live release
	// without building it (Config.Cluster); Commit and Release are live
	// now, Duration is how long fetching and unpacking took.
	EventFollowed EventKind = "followed"
)

// Event is passed to Config.Notify.
type Event struct {
	Kind     EventKind
	Path     string
	Commit   string
	Release  string
	Reason   Reason
	Duration time.Duration // zero for EventStarted
	Err      error         // set for EventFailed
	At       time.Time
}
