package delivery

import (
	"crypto/sha256"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Headers GitHub sets on a delivery.
const (
	GitHubSignatureHeader = "X-Hub-Signature-256"
	GitHubEventHeader     = "X-GitHub-Event"
	GitHubDeliveryHeader  = "X-GitHub-Delivery"
)

// The same, as keys of an http.Header: looking them up allocates nothing.
var (
	keySignature = http.CanonicalHeaderKey(GitHubSignatureHeader)
	keyEvent     = http.CanonicalHeaderKey(GitHubEventHeader)
	keyDelivery  = http.CanonicalHeaderKey(GitHubDeliveryHeader)
)

// GitHub verifies and reads GitHub's deliveries: signed with
// X-Hub-Signature-256 (HMAC-SHA256 of the body; the SHA-1 X-Hub-Signature
// is never accepted), JSON or form-encoded (the JSON in a payload field).
type GitHub struct {
	macs *verifier
}

// NewGitHub returns a GitHub that accepts a delivery signed with any one of
// secrets, which lets a secret be rotated without missing deliveries.
func NewGitHub(secrets [][]byte) *GitHub {
	return &GitHub{macs: newVerifier(secrets)}
}

// Head checks what the headers of a delivery say before its body is read:
// it fails (ErrUnsigned, ErrSignature) when the signature header is missing
// or is not "sha256=" and 64 hex digits. The event is read as one of the
// kinds of want (Push|Ping|Check) or else as Other. Head holds nothing: a
// caller may call it before it has a slot for the body.
func (g *GitHub) Head(h http.Header, want Kind) (Head, error) {
	sig, ok := h[keySignature]
	if !ok || len(sig) == 0 {
		return Head{}, refuse(ErrUnsigned, "missing "+GitHubSignatureHeader+" header")
	}
	hd := Head{forge: g, want: want, nsigs: 1}
	if hd.sigs[0], ok = parseSignature(sig[0]); !ok {
		return Head{}, refuse(ErrSignature, "signature mismatch")
	}
	hd.event = first(h, keyEvent)
	hd.id = g.ID(h)
	hd.mediaType, _, _ = strings.Cut(first(h, "Content-Type"), ";")
	hd.mediaType = strings.TrimSpace(hd.mediaType)
	switch {
	case strings.EqualFold(hd.mediaType, "application/json"):
		hd.format = formatJSON
	case strings.EqualFold(hd.mediaType, "application/x-www-form-urlencoded"):
		hd.format = formatForm
	}
	return hd, nil
}

// ID returns X-GitHub-Delivery when it looks like one (GitHub sends a
// GUID): at most 64 letters, digits, '-', '_' or '.'. Anything else is "":
// it may be shown before the signature is verified, so it is never echoed
// as sent.
func (*GitHub) ID(h http.Header) string {
	v := first(h, keyDelivery)
	if len(v) > 64 {
		return ""
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return ""
		}
	}
	return v
}

// EventName returns X-GitHub-Event as sent, cut to 64 bytes, for logs: it
// is not trusted before the signature is verified, only shown.
func (*GitHub) EventName(h http.Header) string {
	v := first(h, keyEvent)
	if len(v) > 64 {
		v = v[:64]
	}
	return v
}

// first returns the first value of the canonical key in h, or "".
func first(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Head is what the headers of a delivery say, from Head. It holds no
// memory of its own; Body takes what reading the body needs.
type Head struct {
	forge     reading
	want      Kind
	sigs      [maxSignatures][sha256.Size]byte // the MACs the body may have
	nsigs     int
	event     string
	id        string
	mediaType string
	format    int

	// prefix is what the MACs read before the body (GitLab's signing
	// token signs "id.timestamp.body").
	prefix string
	// verified: the headers alone verified the delivery (GitLab's plain
	// token); the body goes through no MAC.
	verified bool
	// macPayload: the MACs read a form's payload field, decoded, rather
	// than the body (Gitea signs the JSON it puts in the form).
	macPayload bool
}

// Body formats, by Content-Type.
const (
	formatOther = iota
	formatJSON
	formatForm
)

// Body returns a Reader for the delivery's body, from a pool: Close gives
// it back.
func (hd *Head) Body() *Reader {
	rd := readers.Get().(*Reader)
	rd.head = *hd
	// The event header picks the fields kept; it is trusted only once the
	// signature verified, and decides then with the same header.
	rd.json.resetFor(hd.forge.schemaFor(hd.event))
	rd.form.reset(rd.json)
	if hd.macPayload {
		rd.form.reset(payloadTee{rd})
	}
	rd.macs = rd.macs[:0]
	if !hd.verified {
		rd.macs = hd.forge.verifier().begin(rd.macs)
		for _, mac := range rd.macs {
			io.WriteString(mac, hd.prefix)
		}
	}
	rd.open = true
	return rd
}

// finish decides what the verified body that rd read says (see
// Reader.Finish): the event header, the content type, the payload's
// syntax, and for the kinds the caller wants, its fields.
func (rd *Reader) finish() (Event, error) {
	hd := &rd.head
	if hd.event == "" {
		return Event{}, refuse(ErrNoEvent, "missing "+GitHubEventHeader+" header")
	}
	switch hd.format {
	case formatOther:
		return Event{}, refuse(ErrContentType,
			"content type "+strconv.Quote(hd.mediaType)+" is not application/json or application/x-www-form-urlencoded")
	case formatForm:
		found, err := rd.form.Finish()
		if err != nil {
			return Event{}, refuse(ErrPayload, "invalid form: "+err.Error())
		}
		if !found {
			return Event{}, refuse(ErrPayload, "form has no payload field")
		}
	}
	if err := rd.json.Finish(); err != nil {
		return Event{}, refuse(ErrPayload, "invalid payload: "+err.Error())
	}
	ev := Event{Name: hd.event, ID: hd.id}
	check, isCheck := checkEvents[hd.event]
	switch {
	case hd.event == "push" && hd.want&Push != 0:
		ev.Kind = Push
	case hd.event == "ping" && hd.want&Ping != 0:
		ev.Kind = Ping
	case isCheck && hd.want&Check != 0:
		ev.Kind = Check
	case hd.event == "pull_request" && hd.want&PullRequest != 0:
		ev.Kind = PullRequest
	default:
		return ev, nil
	}
	if err := rd.json.TypeErr(); err != nil {
		return Event{}, refuse(ErrPayload, "invalid payload: "+err.Error())
	}
	s := rd.json
	if ev.Kind == Check {
		ev.Repository = s.String(fieldCheckRepo)
		ev.DefaultBranch = s.String(fieldCheckDefaultBranch)
		c := &CheckEvent{What: check.what, State: s.String(fieldCheckState)}
		if hd.event == "status" {
			c.CommitStatus = true
			c.Finished = c.State != "pending"
			c.Branches, c.AllBranches = s.Strings(fieldCheckBranch)
		} else {
			c.Finished = c.State == "completed"
			c.Branch = s.String(fieldCheckBranch)
		}
		ev.Check = c
		return ev, nil
	}
	if ev.Kind == PullRequest {
		return pullRequestEvent(ev, s)
	}
	ev.Ref = s.String(fieldRef)
	ev.Deleted = s.Bool(fieldDeleted)
	ev.Repository = s.String(fieldFullName)
	ev.DefaultBranch = s.String(fieldDefaultBranch)
	if ev.Kind == Push {
		ev.After = s.String(fieldAfter)
	}
	return ev, nil
}

// payloadSchema names the fields of a ping delivery (and of any event
// not handled) that decisions read, by their index (fieldRef...);
// pushSchema adds the new tip. To read more, add them here and a constant
// below, in the same order, and count them in ReaderSize.
var (
	payloadSchema = newJSONSchema(
		jsonField{Path: "ref", Kind: kindString},
		jsonField{Path: "deleted", Kind: kindBool},
		jsonField{Path: "repository.full_name", Kind: kindString},
		jsonField{Path: "repository.default_branch", Kind: kindString},
	)
	pushSchema = newJSONSchema(
		jsonField{Path: "ref", Kind: kindString},
		jsonField{Path: "deleted", Kind: kindBool},
		jsonField{Path: "repository.full_name", Kind: kindString},
		jsonField{Path: "repository.default_branch", Kind: kindString},
		// A commit's name: 40 hex digits, 64 for SHA-256 repositories.
		jsonField{Path: "after", Kind: kindString, Max: 64},
	)
)

const (
	fieldRef = iota
	fieldDeleted
	fieldFullName
	fieldDefaultBranch
	fieldAfter
)

// checkEvents are the events that say a check changed, each with its
// schema: the fields of every one are in the same order
// (fieldCheckState...). The status event names the branches holding its
// commit (at most 10) in an array.
var checkEvents = map[string]struct {
	what   string // what the event is about, for answers
	schema *jsonSchema
}{
	"check_run":    {"check run", checkSchema("action", "check_run.check_suite.head_branch")},
	"check_suite":  {"check suite", checkSchema("action", "check_suite.head_branch")},
	"workflow_run": {"workflow run", checkSchema("action", "workflow_run.head_branch")},
	"status":       {"status", checkSchema("state", "branches[].name")},
}

func checkSchema(state, branch string) *jsonSchema {
	return newJSONSchema(
		jsonField{Path: state, Kind: kindString},
		jsonField{Path: "repository.full_name", Kind: kindString},
		jsonField{Path: "repository.default_branch", Kind: kindString},
		jsonField{Path: branch, Kind: kindString},
	)
}

const (
	fieldCheckState = iota // action, or a status's state
	fieldCheckRepo
	fieldCheckDefaultBranch
	fieldCheckBranch // the branch the check ran on; a status's branches
)

// pullRequestSchema names the fields of a pull_request delivery, the
// longest first (the scanner's room for each index is the largest of any
// schema's): a pull request's number, action, branches, head commit and
// repositories, the label of "labeled", and whether it is a draft.
var pullRequestSchema = newJSONSchema(
	jsonField{Path: "pull_request.base.ref", Kind: kindString},
	jsonField{Path: "pull_request.draft", Kind: kindBool, Max: 1},
	jsonField{Path: "repository.full_name", Kind: kindString},
	jsonField{Path: "repository.default_branch", Kind: kindString},
	jsonField{Path: "pull_request.head.sha", Kind: kindString, Max: 64},
	jsonField{Path: "action", Kind: kindString, Max: 32},
	jsonField{Path: "number", Kind: kindNumber, Max: 20},
	// GitHub: an owner of at most 39 characters, a name of at most 100.
	jsonField{Path: "pull_request.head.repo.full_name", Kind: kindString, Max: 256},
	// GitHub: a label of at most 50 characters.
	jsonField{Path: "label.name", Kind: kindString, Max: 256},
)

const (
	fieldPRBase = iota
	fieldPRDraft
	fieldPRRepo
	fieldPRDefaultBranch
	fieldPRHead
	fieldPRAction
	fieldPRNumber
	fieldPRHeadRepo
	fieldPRLabel
)

// pullRequestEvent reads what a pull_request delivery says into ev.
func pullRequestEvent(ev Event, s *jsonScanner) (Event, error) {
	n, ok := s.Int(fieldPRNumber)
	if !ok || n <= 0 || n > 1<<31-1 {
		return Event{}, refuse(ErrPayload, "invalid payload: number is not a pull request's number")
	}
	ev.Repository = s.String(fieldPRRepo)
	ev.DefaultBranch = s.String(fieldPRDefaultBranch)
	pr := &PullRequestEvent{
		Number:         int(n),
		Action:         s.String(fieldPRAction),
		Base:           s.String(fieldPRBase),
		Head:           s.String(fieldPRHead),
		HeadRepository: s.String(fieldPRHeadRepo),
		Label:          s.String(fieldPRLabel),
		Draft:          s.Bool(fieldPRDraft),
	}
	// A head repository that is gone (a deleted fork) is null: not the
	// base repository either.
	pr.Fork = !strings.EqualFold(pr.HeadRepository, ev.Repository) || pr.HeadRepository == ""
	ev.PullRequest = pr
	return ev, nil
}

// schemaFor returns the schema of event's deliveries.
func schemaFor(event string) *jsonSchema {
	if c, ok := checkEvents[event]; ok {
		return c.schema
	}
	if event == "pull_request" {
		return pullRequestSchema
	}
	if event == "push" {
		return pushSchema
	}
	return payloadSchema
}

// allSchemas are the schemas a body may be read with.
func allSchemas() []*jsonSchema {
	list := []*jsonSchema{payloadSchema, pushSchema, pullRequestSchema}
	for _, c := range checkEvents {
		list = append(list, c.schema)
	}
	return list
}
