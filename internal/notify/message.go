// Package notify pushes the results of deploys out to people and programs:
// a JSON webhook signed as Standard Webhooks are (https://www.standardwebhooks.com),
// Slack's and Discord's incoming webhooks, and ntfy. Messages are queued,
// a bounded number per destination, and sent by one goroutine per
// destination with retries and backoff, so that whoever calls Send (a
// deployer) never waits on the network.
//
// It knows nothing of Caddy or git: a Message is the facts of a deploy,
// given by the caller.
package notify

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Kind is what a deploy's result is news as.
type Kind string

// Kinds of a deploy result. A destination is sent the kinds it asked for.
const (
	// Failure: a deploy failed (a fetch, a build or a publish); the live
	// site is as it was.
	Failure Kind = "failure"
	// Recovered: a deploy succeeded after one that failed.
	Recovered Kind = "recovered"
	// Success: a deploy succeeded after one that succeeded too (or as the
	// first since the process started).
	Success Kind = "success"
)

// Kinds lists every Kind, for validating a configuration.
var Kinds = []Kind{Failure, Recovered, Success}

// DefaultKinds are what a destination is sent when it names none: what
// someone must know, and when it is over.
var DefaultKinds = []Kind{Failure, Recovered}

// Message is the result of one deploy. It must hold nothing secret: the
// caller gives a one-line error, never a build's output.
type Message struct {
	Kind     Kind
	Path     string // the target's folder on the server
	Repo     string // owner/name
	Branch   string
	Commit   string // the full SHA; "" when the fetch failed
	Release  string
	Reason   string // what woke the deploy: delivery, poll, manual, ...
	Error    string // one line; "" for a success
	Duration time.Duration
	At       time.Time
	// CommitURL links to the commit on its forge; "" when unknown.
	CommitURL string
}

// result is "ok" or "error", as the admin API says it.
func (m Message) result() string {
	if m.Kind == Failure {
		return "error"
	}
	return "ok"
}

// shortCommit is the commit's first 12 characters.
func (m Message) shortCommit() string {
	if len(m.Commit) > 12 {
		return m.Commit[:12]
	}
	return m.Commit
}

// title is a one-line summary: "octocat/blog: deploy failed".
func (m Message) title() string {
	what := "deployed"
	switch m.Kind {
	case Failure:
		what = "deploy failed"
	case Recovered:
		what = "deployed again after a failure"
	}
	return fmt.Sprintf("%s: %s", m.Repo, what)
}

// text is the message for people: the title, then what and where. The
// commit links to its forge in f's markup (Slack's or Discord's).
func (m Message) text(f Format) string {
	var b strings.Builder
	b.WriteString(m.title())
	b.WriteString("\n")
	commit := m.shortCommit()
	switch {
	case commit == "":
		commit = "(none: the fetch failed)"
	case m.CommitURL != "" && f == FormatSlack:
		commit = fmt.Sprintf("<%s|%s>", m.CommitURL, commit)
	case m.CommitURL != "" && f == FormatDiscord:
		commit = fmt.Sprintf("[%s](<%s>)", commit, m.CommitURL)
	}
	fmt.Fprintf(&b, "branch %s, commit %s, path %s", m.Branch, commit, m.Path)
	if m.Reason != "" {
		fmt.Fprintf(&b, ", woken by %s", m.Reason)
	}
	if m.Duration > 0 {
		fmt.Fprintf(&b, ", took %s", m.Duration.Round(time.Millisecond))
	}
	if m.Error != "" {
		b.WriteString("\nerror: ")
		b.WriteString(m.Error)
	}
	return b.String()
}

// payload is the JSON body of the json format, in the shape the Standard
// Webhooks spec recommends: type, timestamp, data.
type payload struct {
	Type      string      `json:"type"`
	Timestamp time.Time   `json:"timestamp"`
	Data      payloadData `json:"data"`
}

type payloadData struct {
	Kind      Kind    `json:"kind"`
	Result    string  `json:"result"` // "ok" or "error"
	Path      string  `json:"path"`
	Repo      string  `json:"repo"`
	Branch    string  `json:"branch"`
	Commit    string  `json:"commit,omitempty"`
	Release   string  `json:"release,omitempty"`
	Reason    string  `json:"reason,omitempty"`
	Error     string  `json:"error,omitempty"`
	Duration  float64 `json:"duration"` // seconds
	CommitURL string  `json:"commit_url,omitempty"`
}

// jsonBody is the body of the json format.
func (m Message) jsonBody() ([]byte, error) {
	return json.Marshal(payload{
		Type:      "deploy." + string(m.Kind),
		Timestamp: m.At.UTC(),
		Data: payloadData{
			Kind: m.Kind, Result: m.result(), Path: m.Path, Repo: m.Repo, Branch: m.Branch,
			Commit: m.Commit, Release: m.Release, Reason: m.Reason, Error: m.Error,
			Duration: m.Duration.Seconds(), CommitURL: m.CommitURL,
		},
	})
}
