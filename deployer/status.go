package deployer

import (
	"encoding/json"
	"time"
)

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

// Result is the outcome of the last deploy that got past "nothing to do":
// a fetch that failed, or a build that ended (Release is "" for the former).
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
	// History is the newest deploys, newest first: the last 20, without
	// their output tails (Deployer.History has them all).
	History []Deploy `json:"history"`
	// Cluster is the target's group; nil when it deploys alone.
	Cluster *ClusterStatus `json:"cluster,omitempty"`
	// Previews are the previews of pull requests (Config.Previews), by
	// number; nil without previews.
	Previews []PreviewStatus `json:"previews,omitempty"`
}

// Outcomes of a wake, in Checked.Outcome.
const (
	OutcomeLive        = "live"         // the tip was live already: nothing to do
	OutcomeDeployed    = "deployed"     // the tip was built and is live now
	OutcomeFailed      = "failed"       // the tip's build or publish failed
	OutcomeWaiting     = "waiting"      // the tip is left alone: see Detail
	OutcomeFetchFailed = "fetch_failed" // the remote could not be fetched; retried with backoff
	OutcomeInterrupted = "interrupted"  // the deployer stopped during the fetch or the build
	// OutcomeChecksFailed: Config.Gate failed the tip, which is not
	// deployed; Detail says why (which check failed).
	OutcomeChecksFailed = "checks_failed"
	// OutcomeFollowed: this node switched to its group's live release,
	// from the group's archive or a release it kept, without building.
	OutcomeFollowed = "followed"
	// OutcomeStorageFailed: the group's storage (Config.Cluster) could not
	// be read or written; retried with backoff, and the tip is not marked
	// failed. Detail says what failed.
	OutcomeStorageFailed = "storage_failed"
)

// Checked is the worker's last look at the branch's tip, whatever came of
// it: Count advances once per handled wake (wakes that come during a deploy
// coalesce into one), after the wake's deploy, if any, has ended, its result
// is in Last and old releases are pruned; Running is cleared in the same
// step. Tests and scripts wait on it to know that a wake was handled.
type Checked struct {
	Count   uint64    `json:"count"` // wakes handled since the deployer started
	Reason  Reason    `json:"reason"`
	Commit  string    `json:"commit,omitempty"` // the tip found; "" when the fetch failed
	Outcome string    `json:"outcome"`          // one of the Outcome constants
	Detail  string    `json:"detail,omitempty"` // for waiting: why
	At      time.Time `json:"at"`
}
