// Package delivery verifies a forge's webhook deliveries and reads what they
// say, as their bodies stream, into one Event that does not depend on the
// forge. It knows nothing of Caddy, git or the deployer: a delivery only
// says "look again", and what to do about it is the caller's to decide.
//
// A delivery is read in three steps, so that the caller can bound how many
// are read at once and answer before any of a body is read:
//
//	head, err := forge.Head(r.Header, delivery.Push|delivery.Ping)
//	// err: the signature header is missing or malformed; nothing is held.
//	rd := head.Body()         // pooled state for one body; rd.Close() gives it back
//	for ... { rd.Scan(chunk) } // the body, in pieces, as it arrives
//	ev, err := rd.Finish()     // verified, then read; err says which check failed
//
// Memory is bounded whatever the body: a Reader holds at most ReaderSize
// bytes besides one keyed hash per secret, and nothing of the body but the
// few fields an Event carries.
//
// GitHub is the only forge so far. Another one is a type beside it with the
// same methods (Head, ID, EventName), returning the same Head, Reader and
// Event.
package delivery

import "errors"

// Kind is what an event is about, as far as deploying goes. The kinds a
// caller acts on are a set: Push|Ping|Check.
type Kind uint8

// Kinds of event.
const (
	// Other is an event the caller does not act on: only its syntax is
	// checked.
	Other Kind = 0
	// Ping is the forge checking that the webhook works.
	Ping Kind = 1 << (iota - 1)
	// Push is a push to a branch or a tag, or their deletion.
	Push
	// Check is a check of a commit that changed: a check run, a check
	// suite, a workflow run or a commit status.
	Check
	// PullRequest is a change to a pull request (GitHub, Gitea, Forgejo)
	// or a merge request (GitLab): opened, pushed to, closed, labelled.
	PullRequest
)

// String returns the kind's name.
func (k Kind) String() string {
	switch k {
	case Ping:
		return "ping"
	case Push:
		return "push"
	case Check:
		return "check"
	case PullRequest:
		return "pull_request"
	}
	return "other"
}

// Event is what a verified delivery says. Strings are as the delivery
// spells them (repository names keep their case), "" when it does not say.
type Event struct {
	// Kind is what the event is about: Other for every event the caller
	// did not ask for, which then carries only Name and ID.
	Kind Kind
	// Name is the forge's name of the event, such as "push" or "check_run".
	Name string
	// ID is the delivery's identifier when it is well-formed (see ID).
	ID string

	// Repository is the repository's full name, owner/name.
	Repository string
	// DefaultBranch is the repository's default branch.
	DefaultBranch string

	// Push: the ref pushed ("refs/heads/main", "refs/tags/v1"), the ref's
	// new tip (a commit's name in hex, all zeros when Deleted), and
	// whether the ref was deleted.
	Ref     string
	After   string
	Deleted bool

	// Changes are the refs that one push changed, for a forge whose push
	// may change several (Bitbucket): Ref, After and Deleted are the first
	// one's; ForBranch picks the one that matters. MoreChanges reports
	// that the push changed more refs than Changes holds.
	Changes     []Change
	MoreChanges bool

	// Check is set for Kind Check.
	Check *CheckEvent

	// PullRequest is set for Kind PullRequest.
	PullRequest *PullRequestEvent
}

// PullRequestEvent is what a pull request (or merge request) event says.
// A forge's own words are normalised: GitLab's "open" and "update" are
// "opened" and "synchronize", "merge" and "close" are "closed".
type PullRequestEvent struct {
	// Number is the pull request's number in its repository (GitLab's
	// iid).
	Number int
	// Action is what happened: "opened", "reopened", "synchronize",
	// "ready_for_review", "closed", "labeled", or the forge's own word
	// for anything else.
	Action string
	// Base is the branch the pull request would merge into.
	Base string
	// Head is the commit at the pull request's head when the event was
	// sent (hex).
	Head string
	// HeadRepository is the full name of the repository the head branch
	// lives in; Fork reports that it is not the base repository.
	HeadRepository string
	Fork           bool
	// Label is the label added or removed, for "labeled" and "unlabeled".
	Label string
	// Draft reports a draft pull request.
	Draft bool
}

// CheckEvent is what a check event says of the check.
type CheckEvent struct {
	// What the check is, for messages: "check run", "check suite",
	// "workflow run" or "status".
	What string
	// State as the forge names it: an action ("completed", "requested")
	// or a status's state ("success", "pending").
	State string
	// Finished reports whether the check has come to an end (a completed
	// check, a status other than pending): only then can it let a commit
	// go live.
	Finished bool
	// CommitStatus reports that the event is a commit status, which names
	// the branches holding its commit (Branches) rather than the branch it
	// ran on (Branch).
	CommitStatus bool
	// Branch is the branch a check run, suite or workflow ran on; "" for
	// one of a pull request from a fork.
	Branch string
	// Branches are the branches that hold a status's commit, as many as
	// fit in what is kept; AllBranches reports that none was left out.
	Branches    []string
	AllBranches bool
}

// Why a delivery is refused: an *Error wraps one of these. Each answers a
// check of DESIGN.md's order: signature (ErrUnsigned, ErrSignature), event
// header (ErrNoEvent), content type (ErrContentType), payload (ErrPayload).
var (
	// ErrUnsigned: the signature header is missing.
	ErrUnsigned = errors.New("delivery: unsigned")
	// ErrSignature: the signature header is malformed, or matches no
	// secret.
	ErrSignature = errors.New("delivery: signature mismatch")
	// ErrNoEvent: a verified delivery does not name its event.
	ErrNoEvent = errors.New("delivery: no event")
	// ErrContentType: the body is neither JSON nor a form.
	ErrContentType = errors.New("delivery: unsupported content type")
	// ErrPayload: the body is not a valid payload of its event.
	ErrPayload = errors.New("delivery: invalid payload")
)

// Error is why a delivery was refused. Its message is fit for the answer
// to the delivery: before the signature verified, it names only the check
// that failed.
type Error struct {
	Err error // one of ErrUnsigned, ErrSignature...
	Msg string
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Err }

func refuse(err error, msg string) *Error { return &Error{Err: err, Msg: msg} }
