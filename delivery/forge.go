package delivery

import (
	"net/http"
	"strconv"
	"strings"
)

// Forge verifies and reads the deliveries of one forge: GitHub, Gitea (and
// Forgejo), GitLab or Bitbucket. Each returns the same Head, Reader and
// Event, so that the same rules apply to all of them.
type Forge interface {
	// Head checks what the headers of a delivery say before its body is
	// read: it fails (ErrUnsigned, ErrSignature) when the forge's
	// signature or token header is missing, empty or malformed, or, where
	// the headers alone verify, wrong. It holds nothing.
	Head(h http.Header, want Kind) (Head, error)
	// ID returns the delivery's identifier when it is well-formed, or "":
	// it may be shown before the signature is verified.
	ID(h http.Header) string
	// EventName returns the event's name as sent, cut short, for logs.
	EventName(h http.Header) string
	// IDHeader names the header that carries the delivery's identifier,
	// which an answer echoes.
	IDHeader() string
}

// reading is what reading a delivery's body needs of its forge.
type reading interface {
	// verifier keys the MACs a body goes through.
	verifier() *verifier
	// schemaFor is the schema of the fields kept of event's bodies.
	schemaFor(event string) *jsonSchema
	// finish decides what the verified body that rd read says.
	finish(rd *Reader) (Event, error)
}

// maxSignatures is how many signatures of one delivery are tried (GitLab's
// signing token may send several): more are ignored.
const maxSignatures = 4

func (g *GitHub) verifier() *verifier              { return g.macs }
func (*GitHub) schemaFor(event string) *jsonSchema { return schemaFor(event) }
func (*GitHub) finish(rd *Reader) (Event, error)   { return rd.finish() }
func (*GitHub) IDHeader() string                   { return GitHubDeliveryHeader }

// everySchema returns every schema a body may be read with, of every
// forge: a pooled Reader has room for the largest.
func everySchema() []*jsonSchema {
	list := allSchemas()
	list = append(list, giteaSchemas()...)
	list = append(list, gitlabSchemas()...)
	list = append(list, bitbucketSchemas()...)
	return list
}

// cleanID returns v when it looks like a delivery's identifier (a UUID, a
// GUID, perhaps in braces): at most 64 letters, digits, '-', '_', '.',
// '{' or '}'. Anything else is "": it may be shown before the signature is
// verified, so it is never echoed as sent.
func cleanID(v string) string {
	if len(v) > 64 {
		return ""
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == '{' || c == '}') {
			return ""
		}
	}
	return v
}

// shown returns v cut to 64 bytes, for logs.
func shown(v string) string {
	if len(v) > 64 {
		v = v[:64]
	}
	return v
}

// firstOf returns the first non-empty value of the canonical keys in h,
// or "".
func firstOf(h http.Header, keys ...string) string {
	for _, k := range keys {
		if v := first(h, k); v != "" {
			return v
		}
	}
	return ""
}

// setFormat sets hd's media type and body format from h's Content-Type.
func (hd *Head) setFormat(h http.Header) {
	hd.mediaType, _, _ = strings.Cut(first(h, "Content-Type"), ";")
	hd.mediaType = strings.TrimSpace(hd.mediaType)
	switch {
	case strings.EqualFold(hd.mediaType, "application/json"):
		hd.format = formatJSON
	case strings.EqualFold(hd.mediaType, "application/x-www-form-urlencoded"):
		hd.format = formatForm
	}
}

// checkBody runs the checks that follow the signature, for every forge:
// the event header (named eventHeader in the error), the content type
// (forms only where form is true), the payload's syntax.
func (rd *Reader) checkBody(eventHeader string, form bool) error {
	hd := &rd.head
	if hd.event == "" {
		return refuse(ErrNoEvent, "missing "+eventHeader+" header")
	}
	switch {
	case hd.format == formatForm && form:
		found, err := rd.form.Finish()
		if err != nil {
			return refuse(ErrPayload, "invalid form: "+err.Error())
		}
		if !found {
			return refuse(ErrPayload, "form has no payload field")
		}
	case hd.format == formatJSON:
	case form:
		return refuse(ErrContentType,
			"content type "+strconv.Quote(hd.mediaType)+" is not application/json or application/x-www-form-urlencoded")
	default:
		return refuse(ErrContentType, "content type "+strconv.Quote(hd.mediaType)+" is not application/json")
	}
	if err := rd.json.Finish(); err != nil {
		return refuse(ErrPayload, "invalid payload: "+err.Error())
	}
	return nil
}

// fieldsErr is the error of a payload whose kept fields are of the wrong
// kind, or nil.
func (rd *Reader) fieldsErr() error {
	if err := rd.json.TypeErr(); err != nil {
		return refuse(ErrPayload, "invalid payload: "+err.Error())
	}
	return nil
}

// zeroCommit reports whether s names no commit: all zeros (40, or 64 for
// SHA-256 repositories), as forges write the new tip of a deleted ref.
func zeroCommit(s string) bool {
	return s != "" && strings.Trim(s, "0") == ""
}
