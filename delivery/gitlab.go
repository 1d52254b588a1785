package delivery

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Headers GitLab sets on a delivery: its plain token, or the Standard
// Webhooks headers of its signing token.
const (
	GitLabTokenHeader      = "X-Gitlab-Token"
	GitLabEventHeader      = "X-Gitlab-Event"
	GitLabDeliveryHeader   = "X-Gitlab-Event-UUID"
	WebhookIDHeader        = "webhook-id"
	WebhookTimestampHeader = "webhook-timestamp"
	WebhookSignatureHeader = "webhook-signature"
)

var (
	keyGitLabToken      = http.CanonicalHeaderKey(GitLabTokenHeader)
	keyGitLabEvent      = http.CanonicalHeaderKey(GitLabEventHeader)
	keyGitLabDelivery   = http.CanonicalHeaderKey(GitLabDeliveryHeader)
	keyWebhookID        = http.CanonicalHeaderKey(WebhookIDHeader)
	keyWebhookTimestamp = http.CanonicalHeaderKey(WebhookTimestampHeader)
	keyWebhookSignature = http.CanonicalHeaderKey(WebhookSignatureHeader)
)

// SigningTokenPrefix starts a GitLab signing token (Standard Webhooks'
// "whsec_"): the rest is its key, in base64.
const SigningTokenPrefix = "whsec_"

// SignatureTolerance is how far a signed delivery's webhook-timestamp may
// be from now, either way, as Standard Webhooks says: an older delivery
// replayed is refused.
const SignatureTolerance = 5 * time.Minute

// maxWebhookID is the longest webhook-id read (GitLab sends a UUID).
const maxWebhookID = 128

// GitLab verifies and reads GitLab's deliveries. A secret is either the
// webhook's secret token, which GitLab sends as is in X-Gitlab-Token and
// which is compared in constant time (both sides hashed first, so that
// not even its length shows), or its signing token (whsec_ and a base64
// key): GitLab then signs, as Standard Webhooks specifies, webhook-id,
// webhook-timestamp and the body ("id.timestamp.body", HMAC-SHA256, in
// webhook-signature as "v1,<base64>", several separated by spaces), and a
// timestamp more than SignatureTolerance from now is refused. A delivery
// with webhook-signature is checked against the signing tokens when there
// are any; else its X-Gitlab-Token against the plain ones. Pushes are
// "Push Hook" and "Tag Push Hook" events (a deleted ref has an after of
// zeros), merge requests "Merge Request Hook".
type GitLab struct {
	tokens  [][sha256.Size]byte // the SHA-256 of each plain token
	signing *verifier           // keyed with each signing token's key
	nsign   int
	now     func() time.Time
}

// GitLabOption sets up a GitLab.
type GitLabOption func(*GitLab)

// GitLabClock makes now the clock that webhook-timestamp is compared
// with.
func GitLabClock(now func() time.Time) GitLabOption {
	return func(g *GitLab) { g.now = now }
}

// NewGitLab returns a GitLab that accepts a delivery with any one of
// secrets: plain tokens, or signing tokens (whsec_...). It fails when a
// signing token's key is not base64; the error never shows a secret.
func NewGitLab(secrets [][]byte, opts ...GitLabOption) (*GitLab, error) {
	g := &GitLab{now: time.Now}
	var keys [][]byte
	for i, s := range secrets {
		if b64, ok := strings.CutPrefix(string(s), SigningTokenPrefix); ok {
			key, err := base64.StdEncoding.DecodeString(b64)
			if err != nil || len(key) == 0 {
				return nil, fmt.Errorf("secret %d: a GitLab signing token is %s and a key in base64", i+1, SigningTokenPrefix)
			}
			keys = append(keys, key)
			continue
		}
		g.tokens = append(g.tokens, sha256.Sum256(s))
	}
	g.signing, g.nsign = newVerifier(keys), len(keys)
	for _, o := range opts {
		o(g)
	}
	return g, nil
}

// Head verifies a delivery's token, or reads its signatures and checks
// their timestamp.
func (g *GitLab) Head(h http.Header, want Kind) (Head, error) {
	hd := Head{forge: g, want: want}
	sig := first(h, keyWebhookSignature)
	token := first(h, keyGitLabToken)
	switch {
	case sig != "" && g.nsign > 0:
		if err := g.readSignatures(&hd, h, sig); err != nil {
			return Head{}, err
		}
	case token != "" && len(g.tokens) > 0:
		sum := sha256.Sum256([]byte(token))
		ok := false
		for i := range g.tokens {
			if hmac.Equal(sum[:], g.tokens[i][:]) {
				ok = true
			}
		}
		if !ok {
			return Head{}, refuse(ErrSignature, "token mismatch")
		}
		hd.verified = true
	case len(g.tokens) == 0:
		return Head{}, refuse(ErrUnsigned, "missing "+WebhookSignatureHeader+" header")
	case g.nsign == 0:
		return Head{}, refuse(ErrUnsigned, "missing "+GitLabTokenHeader+" header")
	default:
		return Head{}, refuse(ErrUnsigned, "missing "+GitLabTokenHeader+" or "+WebhookSignatureHeader+" header")
	}
	hd.event = first(h, keyGitLabEvent)
	hd.id = g.ID(h)
	hd.setFormat(h)
	return hd, nil
}

// readSignatures fills hd with the signatures of sig, a value of
// webhook-signature, and the prefix they sign, from webhook-id and a
// webhook-timestamp close enough to now.
func (g *GitLab) readSignatures(hd *Head, h http.Header, sig string) error {
	id, ts := first(h, keyWebhookID), first(h, keyWebhookTimestamp)
	if id == "" || ts == "" {
		return refuse(ErrUnsigned, "missing "+WebhookIDHeader+" or "+WebhookTimestampHeader+" header")
	}
	if len(id) > maxWebhookID || strings.ContainsAny(id, ". \t") {
		return refuse(ErrSignature, "signature mismatch")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(ts) > 19 || ts[0] == '+' || ts[0] == '-' {
		return refuse(ErrSignature, "signature mismatch")
	}
	if d := g.now().Sub(time.Unix(sec, 0)); d > SignatureTolerance || d < -SignatureTolerance {
		return refuse(ErrSignature, "signature timestamp is more than 5 minutes from now")
	}
	for f := range strings.FieldsSeq(sig) {
		b64, ok := strings.CutPrefix(f, "v1,")
		if !ok || hd.nsigs == maxSignatures || base64.StdEncoding.DecodedLen(len(b64)) > sha256.Size+2 {
			continue
		}
		var sum [sha256.Size + 2]byte
		if n, err := base64.StdEncoding.Decode(sum[:], []byte(b64)); err == nil && n == sha256.Size {
			copy(hd.sigs[hd.nsigs][:], sum[:n])
			hd.nsigs++
		}
	}
	if hd.nsigs == 0 {
		return refuse(ErrSignature, "signature mismatch")
	}
	hd.prefix = id + "." + ts + "."
	return nil
}

// ID returns X-Gitlab-Event-UUID when it looks like one.
func (*GitLab) ID(h http.Header) string { return cleanID(first(h, keyGitLabDelivery)) }

// EventName returns X-Gitlab-Event as sent, cut short.
func (*GitLab) EventName(h http.Header) string { return shown(first(h, keyGitLabEvent)) }

// IDHeader is X-Gitlab-Event-UUID.
func (*GitLab) IDHeader() string { return GitLabDeliveryHeader }

func (g *GitLab) verifier() *verifier { return g.signing }

// Schemas of GitLab's events: the first two fields of each are the
// project's (fieldGitLabRepo, fieldGitLabDefaultBranch).
var (
	gitlabPushSchema = newJSONSchema(
		jsonField{Path: "project.path_with_namespace", Kind: kindString},
		jsonField{Path: "project.default_branch", Kind: kindString},
		jsonField{Path: "ref", Kind: kindString},
		jsonField{Path: "after", Kind: kindString, Max: 64},
	)
	gitlabMergeSchema = newJSONSchema(
		jsonField{Path: "project.path_with_namespace", Kind: kindString},
		jsonField{Path: "project.default_branch", Kind: kindString},
		jsonField{Path: "object_attributes.target_branch", Kind: kindString},
		jsonField{Path: "object_attributes.source.path_with_namespace", Kind: kindString},
		jsonField{Path: "object_attributes.last_commit.id", Kind: kindString, Max: 64},
		jsonField{Path: "object_attributes.action", Kind: kindString, Max: 64},
		jsonField{Path: "object_attributes.iid", Kind: kindNumber, Max: 20},
		jsonField{Path: "object_attributes.draft", Kind: kindBool, Max: 1},
	)
	gitlabOtherSchema = newJSONSchema(
		jsonField{Path: "project.path_with_namespace", Kind: kindString},
		jsonField{Path: "project.default_branch", Kind: kindString},
	)
)

const (
	fieldGitLabRepo = iota
	fieldGitLabDefaultBranch
	fieldGitLabRef // push; merge request: target branch
	fieldGitLabAfter
	fieldGitLabTarget = fieldGitLabRef
	fieldGitLabSource = fieldGitLabAfter
	fieldGitLabLast   = 4
	fieldGitLabAction = 5
	fieldGitLabIID    = 6
	fieldGitLabDraft  = 7
)

func gitlabSchemas() []*jsonSchema {
	return []*jsonSchema{gitlabPushSchema, gitlabMergeSchema, gitlabOtherSchema}
}

func (*GitLab) schemaFor(event string) *jsonSchema {
	switch event {
	case "Push Hook", "Tag Push Hook":
		return gitlabPushSchema
	case "Merge Request Hook":
		return gitlabMergeSchema
	}
	return gitlabOtherSchema
}

// gitlabActions are GitLab's words for what happened to a merge request,
// as GitHub says them of a pull request.
var gitlabActions = map[string]string{
	"open":   "opened",
	"reopen": "reopened",
	"update": "synchronize",
	"close":  "closed",
	"merge":  "closed",
}

func (*GitLab) finish(rd *Reader) (Event, error) {
	hd := &rd.head
	if err := rd.checkBody(GitLabEventHeader, false); err != nil {
		return Event{}, err
	}
	ev := Event{Name: hd.event, ID: hd.id}
	switch hd.event {
	case "Push Hook", "Tag Push Hook":
		if hd.want&Push == 0 {
			return ev, nil
		}
		ev.Kind = Push
	case "Merge Request Hook":
		if hd.want&PullRequest == 0 {
			return ev, nil
		}
		ev.Kind = PullRequest
	default:
		return ev, nil
	}
	if err := rd.fieldsErr(); err != nil {
		return Event{}, err
	}
	s := rd.json
	ev.Repository = s.String(fieldGitLabRepo)
	ev.DefaultBranch = s.String(fieldGitLabDefaultBranch)
	if ev.Kind == Push {
		ev.Ref = s.String(fieldGitLabRef)
		ev.After = s.String(fieldGitLabAfter)
		ev.Deleted = zeroCommit(ev.After)
		return ev, nil
	}
	iid, ok := s.Int(fieldGitLabIID)
	if !ok || iid <= 0 {
		return Event{}, refuse(ErrPayload, "invalid payload: object_attributes.iid is not a merge request's number")
	}
	pr := &PullRequestEvent{
		Number:         int(iid),
		Action:         s.String(fieldGitLabAction),
		Base:           s.String(fieldGitLabTarget),
		Head:           s.String(fieldGitLabLast),
		HeadRepository: s.String(fieldGitLabSource),
		Draft:          s.Bool(fieldGitLabDraft),
	}
	if a, ok := gitlabActions[pr.Action]; ok {
		pr.Action = a
	}
	pr.Fork = !strings.EqualFold(pr.HeadRepository, ev.Repository)
	ev.PullRequest = pr
	return ev, nil
}
