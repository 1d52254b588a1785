package delivery

import (
	"net/http"
	"strings"
)

// Headers Gitea sets on a delivery; Forgejo sets these and its own.
const (
	GiteaSignatureHeader   = "X-Gitea-Signature"
	GiteaEventHeader       = "X-Gitea-Event"
	GiteaDeliveryHeader    = "X-Gitea-Delivery"
	ForgejoSignatureHeader = "X-Forgejo-Signature"
	ForgejoEventHeader     = "X-Forgejo-Event"
	ForgejoDeliveryHeader  = "X-Forgejo-Delivery"
)

var (
	keyGiteaSignature   = http.CanonicalHeaderKey(GiteaSignatureHeader)
	keyGiteaEvent       = http.CanonicalHeaderKey(GiteaEventHeader)
	keyGiteaDelivery    = http.CanonicalHeaderKey(GiteaDeliveryHeader)
	keyForgejoSignature = http.CanonicalHeaderKey(ForgejoSignatureHeader)
	keyForgejoEvent     = http.CanonicalHeaderKey(ForgejoEventHeader)
	keyForgejoDelivery  = http.CanonicalHeaderKey(ForgejoDeliveryHeader)
)

// Gitea verifies and reads the deliveries of a Gitea or Forgejo webhook of
// type Gitea (or Forgejo): signed with X-Gitea-Signature or
// X-Forgejo-Signature, the HMAC-SHA256 of the body in hex with no prefix
// (an empty one, as sent by a webhook without a secret, is missing); JSON,
// or a form whose payload field holds the JSON, which is what is signed.
// Forgejo sends Gitea's headers and its own; either set alone does. Pushes
// are push events; a deleted branch or tag is a delete event; a webhook's
// test delivery is a push whose before and after are the same (a fake
// commit of zeros since Gitea 1.22), read as Ping.
type Gitea struct {
	macs    *verifier
	forgejo bool
}

// NewGitea returns a Gitea that accepts a delivery signed with any one of
// secrets.
func NewGitea(secrets [][]byte) *Gitea {
	return &Gitea{macs: newVerifier(secrets)}
}

// NewForgejo is NewGitea for Forgejo: its own headers come first in
// answers and errors.
func NewForgejo(secrets [][]byte) *Gitea {
	return &Gitea{macs: newVerifier(secrets), forgejo: true}
}

// keys returns the forge's own header key, then the other's.
func (g *Gitea) keys(gitea, forgejo string) (string, string) {
	if g.forgejo {
		return forgejo, gitea
	}
	return gitea, forgejo
}

// header returns the forge's own header of h, or else the other's.
func (g *Gitea) header(h http.Header, gitea, forgejo string) string {
	own, other := g.keys(gitea, forgejo)
	return firstOf(h, own, other)
}

// Head checks the signature header: 64 hex digits. It fails with
// ErrUnsigned when both headers are missing or empty.
func (g *Gitea) Head(h http.Header, want Kind) (Head, error) {
	own, other := g.keys(keyGiteaSignature, keyForgejoSignature)
	sig := firstOf(h, own, other)
	if sig == "" {
		return Head{}, refuse(ErrUnsigned, "missing "+own+" header")
	}
	hd := Head{forge: g, want: want, nsigs: 1}
	if len(sig) != 2*len(hd.sigs[0]) || !decodeHex(hd.sigs[0][:], sig) {
		return Head{}, refuse(ErrSignature, "signature mismatch")
	}
	hd.event = g.header(h, keyGiteaEvent, keyForgejoEvent)
	hd.id = g.ID(h)
	hd.setFormat(h)
	hd.macPayload = hd.format == formatForm
	return hd, nil
}

// ID returns X-Gitea-Delivery or X-Forgejo-Delivery when it looks like one.
func (g *Gitea) ID(h http.Header) string {
	return cleanID(g.header(h, keyGiteaDelivery, keyForgejoDelivery))
}

// EventName returns X-Gitea-Event or X-Forgejo-Event as sent, cut short.
func (g *Gitea) EventName(h http.Header) string {
	return shown(g.header(h, keyGiteaEvent, keyForgejoEvent))
}

// IDHeader is X-Gitea-Delivery, or X-Forgejo-Delivery for Forgejo.
func (g *Gitea) IDHeader() string {
	if g.forgejo {
		return ForgejoDeliveryHeader
	}
	return GiteaDeliveryHeader
}

func (g *Gitea) verifier() *verifier { return g.macs }

// Schemas of Gitea's events: the first two fields of each are the
// repository's (fieldGiteaRepo, fieldGiteaDefaultBranch).
var (
	giteaPushSchema = newJSONSchema(
		jsonField{Path: "repository.full_name", Kind: kindString},
		jsonField{Path: "repository.default_branch", Kind: kindString},
		jsonField{Path: "ref", Kind: kindString},
		jsonField{Path: "after", Kind: kindString, Max: 64},
		jsonField{Path: "before", Kind: kindString, Max: 64},
	)
	// A delete event names the ref without its prefix, and its type.
	giteaDeleteSchema = newJSONSchema(
		jsonField{Path: "repository.full_name", Kind: kindString},
		jsonField{Path: "repository.default_branch", Kind: kindString},
		jsonField{Path: "ref", Kind: kindString},
		jsonField{Path: "ref_type", Kind: kindString, Max: 64},
	)
	giteaPullSchema = newJSONSchema(
		jsonField{Path: "repository.full_name", Kind: kindString},
		jsonField{Path: "repository.default_branch", Kind: kindString},
		jsonField{Path: "pull_request.base.ref", Kind: kindString},
		jsonField{Path: "pull_request.head.repo.full_name", Kind: kindString},
		jsonField{Path: "pull_request.head.sha", Kind: kindString, Max: 64},
		jsonField{Path: "action", Kind: kindString, Max: 64},
		jsonField{Path: "number", Kind: kindNumber, Max: 20},
		jsonField{Path: "pull_request.draft", Kind: kindBool, Max: 1},
	)
	giteaOtherSchema = newJSONSchema(
		jsonField{Path: "repository.full_name", Kind: kindString},
		jsonField{Path: "repository.default_branch", Kind: kindString},
	)
)

const (
	fieldGiteaRepo = iota
	fieldGiteaDefaultBranch
	fieldGiteaRef      // push, delete
	fieldGiteaAfter    // push; delete: ref_type
	fieldGiteaBefore   // push
	fieldGiteaRefType  = fieldGiteaAfter
	fieldGiteaBase     = fieldGiteaRef
	fieldGiteaHeadRepo = fieldGiteaAfter
	fieldGiteaHeadSHA  = fieldGiteaBefore
	fieldGiteaAction   = 5
	fieldGiteaNumber   = 6
	fieldGiteaDraft    = 7
)

func giteaSchemas() []*jsonSchema {
	return []*jsonSchema{giteaPushSchema, giteaDeleteSchema, giteaPullSchema, giteaOtherSchema}
}

func (*Gitea) schemaFor(event string) *jsonSchema {
	switch event {
	case "push":
		return giteaPushSchema
	case "delete":
		return giteaDeleteSchema
	case "pull_request":
		return giteaPullSchema
	}
	return giteaOtherSchema
}

// giteaActions are Gitea's words for what happened to a pull request that
// differ from GitHub's.
var giteaActions = map[string]string{
	"synchronized": "synchronize",
}

func (g *Gitea) finish(rd *Reader) (Event, error) {
	hd := &rd.head
	own, _ := g.keys(GiteaEventHeader, ForgejoEventHeader)
	if err := rd.checkBody(own, true); err != nil {
		return Event{}, err
	}
	ev := Event{Name: hd.event, ID: hd.id}
	switch {
	case (hd.event == "push" || hd.event == "delete") && hd.want&(Push|Ping) != 0,
		hd.event == "pull_request" && hd.want&PullRequest != 0:
	default:
		return ev, nil
	}
	if err := rd.fieldsErr(); err != nil {
		return Event{}, err
	}
	s := rd.json
	ev.Repository = s.String(fieldGiteaRepo)
	ev.DefaultBranch = s.String(fieldGiteaDefaultBranch)
	switch hd.event {
	case "push":
		ev.Ref = s.String(fieldGiteaRef)
		ev.After = s.String(fieldGiteaAfter)
		before := s.String(fieldGiteaBefore)
		switch {
		case before == ev.After && hd.want&Ping != 0:
			// The webhook's test delivery: nothing moved.
			return Event{Kind: Ping, Name: ev.Name, ID: ev.ID, Repository: ev.Repository, DefaultBranch: ev.DefaultBranch}, nil
		case hd.want&Push == 0:
			return Event{Name: ev.Name, ID: ev.ID}, nil
		}
		ev.Kind = Push
		ev.Deleted = zeroCommit(ev.After)
	case "delete":
		if hd.want&Push == 0 {
			return Event{Name: ev.Name, ID: ev.ID}, nil
		}
		ev.Kind, ev.Deleted = Push, true
		ref := s.String(fieldGiteaRef)
		switch s.String(fieldGiteaRefType) {
		case "branch":
			ev.Ref = "refs/heads/" + ref
		case "tag":
			ev.Ref = "refs/tags/" + ref
		default:
			ev.Ref = ref
		}
	case "pull_request":
		number, ok := s.Int(fieldGiteaNumber)
		if !ok || number <= 0 {
			return Event{}, refuse(ErrPayload, "invalid payload: number is not a pull request's number")
		}
		ev.Kind = PullRequest
		pr := &PullRequestEvent{
			Number:         int(number),
			Action:         s.String(fieldGiteaAction),
			Base:           s.String(fieldGiteaBase),
			Head:           s.String(fieldGiteaHeadSHA),
			HeadRepository: s.String(fieldGiteaHeadRepo),
			Draft:          s.Bool(fieldGiteaDraft),
		}
		if a, ok := giteaActions[pr.Action]; ok {
			pr.Action = a
		}
		pr.Fork = !strings.EqualFold(pr.HeadRepository, ev.Repository)
		ev.PullRequest = pr
	}
	return ev, nil
}
