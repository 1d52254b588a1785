package deployer

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

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

// Sentinel errors.
var (
	// ErrClosed is returned by calls on a Deployer after Close.
	ErrClosed = errors.New("deployer: closed")
	// ErrUnknownRelease is returned by Rollback for a release that is not on disk.
	ErrUnknownRelease = errors.New("deployer: no such release")
	// ErrNoOlderRelease is returned by Rollback when no kept release is older
	// than the live one.
	ErrNoOlderRelease = errors.New("deployer: no older release to roll back to")
	// ErrBusy is returned by New when another process holds the folder.
	ErrBusy = errors.New("deployer: path is in use by another process")
)

// BuildError is the error of a command that failed: it exited non-zero, was
// killed by the timeout, or could not start.
type BuildError struct {
	Command  string // argv[0] and its arguments, for humans
	ExitCode int    // -1 when it did not exit on its own
	Tail     string // the last lines of its output
	Err      error
}

func (e *BuildError) Error() string {
	return fmt.Sprintf("running %s: %v", e.Command, e.Err)
}

func (e *BuildError) Unwrap() error { return e.Err }

// Live is the release Path/current points to.
type Live struct {
	Commit  string    `json:"commit"`
	Release string    `json:"release"`
	At      time.Time `json:"at"`
}

// Running describes the deploy in progress.
type Running struct {
	Reason  Reason    `json:"reason"`
	Commit  string    `json:"commit,omitempty"`
	Release string    `json:"release,omitempty"`
	Since   time.Time `json:"since"`
}

// Result is the outcome of the last deploy that got past "nothing to do".
type Result struct {
	Result     string    `json:"result"` // "ok" or "error"
	Error      string    `json:"error,omitempty"`
	OutputTail string    `json:"output_tail,omitempty"`
	Duration   Seconds   `json:"duration"` // in seconds in JSON
	Reason     Reason    `json:"reason"`
	Commit     string    `json:"commit,omitempty"`
	Release    string    `json:"release,omitempty"`
	At         time.Time `json:"at"`
	Log        string    `json:"log,omitempty"` // path of the build log
}

// Seconds is a duration that reads and writes JSON as a number of seconds,
// as logs and metrics show durations.
type Seconds time.Duration

// MarshalJSON writes d as seconds.
func (d Seconds) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).Seconds())
}

// UnmarshalJSON reads seconds.
func (d *Seconds) UnmarshalJSON(b []byte) error {
	var s float64
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*d = Seconds(s * float64(time.Second))
	return nil
}

// Status is a snapshot of one target.
type Status struct {
	Path     string   `json:"path"`
	Repo     string   `json:"repo"`
	Branch   string   `json:"branch"` // as configured, or as resolved from the remote's HEAD
	Remote   string   `json:"remote"` // credentials redacted
	Live     *Live    `json:"live"`
	Running  *Running `json:"running"`
	Last     *Result  `json:"last"`
	Checked  *Checked `json:"checked"`  // nil until the first wake is handled
	Releases []string `json:"releases"` // on disk, newest first
}

// Outcomes of a wake, in Checked.Outcome.
const (
	OutcomeLive        = "live"         // the tip was live already: nothing to do
	OutcomeDeployed    = "deployed"     // the tip was built and is live now
	OutcomeFailed      = "failed"       // the tip's build or publish failed
	OutcomeWaiting     = "waiting"      // the tip is left alone: see Detail
	OutcomeFetchFailed = "fetch_failed" // the remote could not be fetched; retried with backoff
	OutcomeInterrupted = "interrupted"  // the deployer stopped during the fetch or the build
)

// Checked is the worker's last look at the branch's tip, whatever came of
// it: Count advances once per handled wake, after the wake's deploy (if any)
// has finished, its result is in Last and its releases are pruned. Tests and
// scripts wait on it to know that a wake was handled.
type Checked struct {
	Count   uint64    `json:"count"` // wakes handled since the deployer started
	Reason  Reason    `json:"reason"`
	Commit  string    `json:"commit,omitempty"` // the tip found; "" when the fetch failed
	Outcome string    `json:"outcome"`          // one of the Outcome constants
	Detail  string    `json:"detail,omitempty"` // for waiting: why
	At      time.Time `json:"at"`
}

// EventKind names a deploy event.
type EventKind string

// Event kinds, in the order a deploy emits them.
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
