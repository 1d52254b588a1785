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
)

// explicit reports whether r is a request that must not be ignored because of
// a past failure or a rollback pin.
func (r Reason) explicit() bool { return r == ReasonDelivery || r == ReasonManual }

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
