package delivery

import (
	"net/http"
)

// Headers Bitbucket sets on a delivery.
const (
	BitbucketSignatureHeader = "X-Hub-Signature"
	BitbucketEventHeader     = "X-Event-Key"
	BitbucketDeliveryHeader  = "X-Request-UUID"
)

var (
	keyBitbucketSignature = http.CanonicalHeaderKey(BitbucketSignatureHeader)
	keyBitbucketEvent     = http.CanonicalHeaderKey(BitbucketEventHeader)
	keyBitbucketDelivery  = http.CanonicalHeaderKey(BitbucketDeliveryHeader)
)

// Bitbucket verifies and reads Bitbucket's deliveries: signed, when the
// webhook has a secret, with X-Hub-Signature: "sha256=" and the
// HMAC-SHA256 of the body in hex; JSON. A push is a repo:push event that
// may change several refs (push.changes[], each with the ref's new state,
// null when it was deleted, and its old one): Event.Changes holds them.
// Bitbucket Data Center's test delivery, diagnostics:ping, is Ping.
type Bitbucket struct {
	macs *verifier
}

// NewBitbucket returns a Bitbucket that accepts a delivery signed with any
// one of secrets.
func NewBitbucket(secrets [][]byte) *Bitbucket {
	return &Bitbucket{macs: newVerifier(secrets)}
}

// Head checks the signature header: "sha256=" and 64 hex digits.
func (b *Bitbucket) Head(h http.Header, want Kind) (Head, error) {
	sig := first(h, keyBitbucketSignature)
	if sig == "" || sig == signaturePrefix {
		return Head{}, refuse(ErrUnsigned, "missing "+BitbucketSignatureHeader+" header")
	}
	hd := Head{forge: b, want: want, nsigs: 1}
	var ok bool
	if hd.sigs[0], ok = parseSignature(sig); !ok {
		return Head{}, refuse(ErrSignature, "signature mismatch")
	}
	hd.event = first(h, keyBitbucketEvent)
	hd.id = b.ID(h)
	hd.setFormat(h)
	return hd, nil
}

// ID returns X-Request-UUID when it looks like one.
func (*Bitbucket) ID(h http.Header) string { return cleanID(first(h, keyBitbucketDelivery)) }

// EventName returns X-Event-Key as sent, cut short.
func (*Bitbucket) EventName(h http.Header) string { return shown(first(h, keyBitbucketEvent)) }

// IDHeader is X-Request-UUID.
func (*Bitbucket) IDHeader() string { return BitbucketDeliveryHeader }

func (b *Bitbucket) verifier() *verifier { return b.macs }

// bitbucketPushSchema keeps, of each change of a push, the new ref's
// name, type and tip, and the old ref's name and type, in order: a
// deleted ref has no new one. The values of all changes together are
// bounded: a push of more refs than fit sets MoreChanges.
var (
	bitbucketPushSchema = newJSONSchema(
		jsonField{Path: "repository.full_name", Kind: kindString},
		jsonField{Path: "push.changes[].new.name", Kind: kindString},
		jsonField{Path: "push.changes[].old.name", Kind: kindString},
		jsonField{Path: "push.changes[].new.target.hash", Kind: kindString},
		jsonField{Path: "push.changes[].new.type", Kind: kindString, Max: 256},
		jsonField{Path: "push.changes[].old.type", Kind: kindString, Max: 256},
	)
	bitbucketOtherSchema = newJSONSchema(
		jsonField{Path: "repository.full_name", Kind: kindString},
	)
)

const (
	fieldBitbucketRepo = iota
	fieldBitbucketNewName
	fieldBitbucketOldName
	fieldBitbucketNewHash
	fieldBitbucketNewType
	fieldBitbucketOldType
)

func bitbucketSchemas() []*jsonSchema {
	return []*jsonSchema{bitbucketPushSchema, bitbucketOtherSchema}
}

func (*Bitbucket) schemaFor(event string) *jsonSchema {
	if event == "repo:push" {
		return bitbucketPushSchema
	}
	return bitbucketOtherSchema
}

func (*Bitbucket) finish(rd *Reader) (Event, error) {
	hd := &rd.head
	if err := rd.checkBody(BitbucketEventHeader, false); err != nil {
		return Event{}, err
	}
	ev := Event{Name: hd.event, ID: hd.id}
	switch {
	case hd.event == "repo:push" && hd.want&Push != 0:
		ev.Kind = Push
	case hd.event == "diagnostics:ping" && hd.want&Ping != 0:
		ev.Kind = Ping
	default:
		return ev, nil
	}
	if err := rd.fieldsErr(); err != nil {
		return Event{}, err
	}
	s := rd.json
	ev.Repository = s.String(fieldBitbucketRepo)
	if ev.Kind == Ping {
		return ev, nil
	}
	names, c1 := s.Strings(fieldBitbucketNewName)
	hashes, c2 := s.Strings(fieldBitbucketNewHash)
	types, c3 := s.Strings(fieldBitbucketNewType)
	oldNames, c4 := s.Strings(fieldBitbucketOldName)
	oldTypes, c5 := s.Strings(fieldBitbucketOldType)
	ev.MoreChanges = !(c1 && c2 && c3 && c4 && c5)
	for i, name := range names {
		c := Change{Ref: bitbucketRef(at(types, i), name), After: at(hashes, i)}
		ev.Changes = append(ev.Changes, c)
	}
	// A ref with an old state and no new one was deleted.
	for i, name := range oldNames {
		ref := bitbucketRef(at(oldTypes, i), name)
		deleted := true
		for _, c := range ev.Changes {
			deleted = deleted && c.Ref != ref
		}
		if deleted {
			ev.Changes = append(ev.Changes, Change{Ref: ref, Deleted: true})
		}
	}
	if len(ev.Changes) > 0 {
		ev.Ref, ev.After, ev.Deleted = ev.Changes[0].Ref, ev.Changes[0].After, ev.Changes[0].Deleted
	}
	return ev, nil
}

// bitbucketRef returns the full name of a ref of Bitbucket's type ("branch",
// "tag"; "named_branch" and "bookmark" are Mercurial's) and name.
func bitbucketRef(typ, name string) string {
	switch typ {
	case "branch", "named_branch":
		return "refs/heads/" + name
	case "tag":
		return "refs/tags/" + name
	}
	return name
}

// at returns list[i], or "".
func at(list []string, i int) string {
	if i < len(list) {
		return list[i]
	}
	return ""
}

// Change is one ref that a push changed.
type Change struct {
	// Ref is the ref's full name ("refs/heads/main"), After its new tip,
	// and Deleted whether it was deleted.
	Ref     string
	After   string
	Deleted bool
}

// ForBranch returns ev with the Ref, After and Deleted of its change to
// branch when it holds several Changes: the one that updates the branch,
// else the one that deletes it. When none does and the push changed more
// refs than were kept (MoreChanges), the branch may be among those left
// out: it reads as an update of branch with no tip, which makes the
// caller look at the remote itself. Else ev is as it was.
func (ev Event) ForBranch(branch string) Event {
	if len(ev.Changes) == 0 && !ev.MoreChanges || branch == "" {
		return ev
	}
	ref := "refs/heads/" + branch
	found := false
	for _, c := range ev.Changes {
		if c.Ref == ref && (!found || !c.Deleted) {
			ev.Ref, ev.After, ev.Deleted = c.Ref, c.After, c.Deleted
			found = true
		}
	}
	if !found && ev.MoreChanges {
		ev.Ref, ev.After, ev.Deleted = ref, "", false
	}
	return ev
}
