package caddywebhook

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sync/semaphore"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
)

// Headers GitHub sets on a delivery.
const (
	headerSignature = "X-Hub-Signature-256"
	headerEvent     = "X-GitHub-Event"
	headerDelivery  = "X-GitHub-Delivery"
)

// The same, as keys of an http.Header: looking them up allocates nothing.
var (
	keySignature = http.CanonicalHeaderKey(headerSignature)
	keyEvent     = http.CanonicalHeaderKey(headerEvent)
	keyDelivery  = http.CanonicalHeaderKey(headerDelivery)
)

// first returns the first value of the canonical key in h, or "".
func first(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Results of a delivery, in answers and logs.
const (
	resultPong    = "pong"
	resultQueued  = "queued"
	resultSkipped = "skipped"
	resultError   = "error"
)

// Memory for bodies. A body of up to smallBody bytes (nearly every delivery)
// is read at once, costing no more than the request headers Caddy already
// accepts. Larger bodies first reserve
// their Content-Length (max_body when it is unknown) from bodyBudget, shared
// by all handlers of the process, and wait in arrival order for room until
// their client gives up. So a flood of large forged deliveries holds at most
// the budget (or one max_body, if larger), and never delays a usual delivery.
var (
	smallBody  int64 = 1 << 20
	bodyBudget int64 = 64 << 20
	bodies           = semaphore.NewWeighted(bodyBudget)
)

// answer is the JSON body of every response of the handler, plus what the
// delivery's log line needs.
type answer struct {
	// Result is "pong", "queued", "skipped" or "error".
	Result string `json:"result"`
	// Reason says why a delivery was skipped.
	Reason string `json:"reason,omitempty"`
	// Error names the check that failed.
	Error string `json:"error,omitempty"`
	// Delivery echoes X-GitHub-Delivery.
	Delivery string `json:"delivery,omitempty"`
	// Repo and Branch are what this endpoint deploys (pong and queued).
	Repo   string `json:"repo,omitempty"`
	Branch string `json:"branch,omitempty"`

	status   int
	event    string
	verified bool // the signature matched
}

func failure(status int, msg string) answer {
	return answer{Result: resultError, Error: msg, status: status}
}

func skipped(reason string) answer {
	return answer{Result: resultSkipped, Reason: reason, status: http.StatusOK}
}

// reason returns what the log line says about why.
func (a *answer) reason() string {
	if a.Error != "" {
		return a.Error
	}
	return a.Reason
}

// write sends a as the response.
func (a *answer) write(w http.ResponseWriter) {
	body, err := json.Marshal(a)
	if err != nil { // cannot happen: a holds only strings
		body = []byte(`{"result":"error"}`)
	}
	hdr := w.Header()
	hdr["Content-Type"] = []string{"application/json"}
	hdr["X-Content-Type-Options"] = []string{"nosniff"}
	if a.Delivery != "" {
		hdr[keyDelivery] = []string{a.Delivery}
	}
	if a.status == http.StatusMethodNotAllowed {
		hdr["Allow"] = []string{http.MethodPost}
	}
	w.WriteHeader(a.status)
	w.Write(append(body, '\n'))
}

// handle runs the checks of a delivery in order (method, size, signature,
// event, content type, payload), and decides what it means. The first check
// that fails answers; until the signature is verified, an answer names only
// the check.
func (h *Handler) handle(r *http.Request) answer {
	a := h.check(r)
	a.Delivery = deliveryID(r.Header)
	// The log line names the event even when the delivery failed a check
	// before it: the header is not trusted, only shown (and cut short).
	a.event = first(r.Header, keyEvent)
	if len(a.event) > 64 {
		a.event = a.event[:64]
	}
	return a
}

func (h *Handler) check(r *http.Request) (a answer) {
	verified := false
	defer func() { a.verified = verified }()
	if r.Method != http.MethodPost {
		return failure(http.StatusMethodNotAllowed, "method not allowed")
	}

	// Size: never read more than max_body+1 bytes, and hold no more than the
	// budget across concurrent deliveries.
	if r.ContentLength > h.maxBody {
		return failure(http.StatusRequestEntityTooLarge, "body too large")
	}
	if r.ContentLength < 0 || r.ContentLength > smallBody {
		reserve := h.maxBody + 1
		if r.ContentLength >= 0 {
			reserve = r.ContentLength + 1
		}
		reserve = min(reserve, bodyBudget)
		if err := bodies.Acquire(r.Context(), reserve); err != nil {
			return failure(http.StatusServiceUnavailable, "too many large deliveries at once")
		}
		defer bodies.Release(reserve)
	}
	buf := getBuffer(r.ContentLength)
	defer putBuffer(buf)
	body, err := readBody(r.Body, h.maxBody, buf)
	*buf = body[:0]
	if errors.Is(err, errTooLarge) {
		return failure(http.StatusRequestEntityTooLarge, "body too large")
	}
	if err != nil {
		return failure(http.StatusBadRequest, "reading body failed")
	}

	// Signature, over the raw bytes as they came.
	sig, ok := r.Header[keySignature]
	if !ok || len(sig) == 0 {
		return failure(http.StatusUnauthorized, "missing "+headerSignature+" header")
	}
	if !h.verifier.verify(sig[0], body) {
		return failure(http.StatusUnauthorized, "signature mismatch")
	}
	verified = true

	// From here on the delivery comes from GitHub: say exactly why.
	event := first(r.Header, keyEvent)
	if event == "" {
		return failure(http.StatusBadRequest, "missing "+headerEvent+" header")
	}
	payload, a, ok := jsonPayload(first(r.Header, "Content-Type"), body)
	if !ok {
		return a
	}
	return h.decide(event, payload)
}

// jsonPayload returns the JSON of a delivery: the body itself, or the
// payload field of a form. When it fails, the answer says why.
func jsonPayload(contentType string, body []byte) ([]byte, answer, bool) {
	mediaType, _, _ := strings.Cut(contentType, ";")
	mediaType = strings.TrimSpace(mediaType)
	switch {
	case strings.EqualFold(mediaType, "application/json"):
		return body, answer{}, true
	case strings.EqualFold(mediaType, "application/x-www-form-urlencoded"):
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, failure(http.StatusBadRequest, "invalid form: "+err.Error()), false
		}
		if !form.Has("payload") {
			return nil, failure(http.StatusBadRequest, "form has no payload field"), false
		}
		return []byte(form.Get("payload")), answer{}, true
	}
	return nil, failure(http.StatusUnsupportedMediaType,
		"content type "+quote(mediaType)+" is not application/json or application/x-www-form-urlencoded"), false
}

// payload is what the handler reads of a push or ping delivery; the rest of
// the JSON is checked for validity and skipped. None of it reaches the
// deployer: a delivery only says "look again".
type payload struct {
	Ref        string `json:"ref"`
	Deleted    bool   `json:"deleted"`
	Repository struct {
		FullName      string `json:"full_name"`
		DefaultBranch string `json:"default_branch"`
	} `json:"repository"`
}

// decide answers a verified delivery of event, and wakes the deployer for a
// push to the branch it deploys.
func (h *Handler) decide(event string, data []byte) answer {
	if event != "push" && event != "ping" {
		if !json.Valid(data) {
			return failure(http.StatusBadRequest, "invalid payload: not JSON")
		}
		return skipped("event " + quote(event) + " not handled")
	}
	var p payload
	if err := json.Unmarshal(data, &p); err != nil {
		return failure(http.StatusBadRequest, "invalid payload: "+err.Error())
	}
	sameRepo := strings.EqualFold(p.Repository.FullName, h.Repo)
	branch := h.branch()
	if branch == "" && sameRepo {
		branch = p.Repository.DefaultBranch
	}

	if event == "ping" {
		a := answer{Result: resultPong, Repo: h.Repo, Branch: branch, status: http.StatusOK}
		if p.Repository.FullName != "" && !sameRepo {
			a.Reason = "this hook is on " + quote(p.Repository.FullName) + " but this endpoint deploys " + quote(h.Repo)
		}
		return a
	}

	switch {
	case !sameRepo:
		return skipped("push to repository " + quote(p.Repository.FullName) + "; this endpoint deploys " + quote(h.Repo))
	case strings.HasPrefix(p.Ref, "refs/tags/"):
		return skipped("push to tag " + quote(strings.TrimPrefix(p.Ref, "refs/tags/")) + "; only branches are deployed")
	case !strings.HasPrefix(p.Ref, "refs/heads/"):
		return skipped("push to " + quote(p.Ref) + ", which is not a branch")
	}
	pushed := strings.TrimPrefix(p.Ref, "refs/heads/")
	switch {
	case branch != "" && pushed != branch:
		return skipped("push to branch " + quote(pushed) + "; this endpoint deploys " + quote(branch))
	case p.Deleted:
		return skipped("branch " + quote(pushed) + " was deleted")
	}
	h.wake(deployer.ReasonDelivery)
	return answer{Result: resultQueued, Repo: h.Repo, Branch: pushed, status: http.StatusAccepted}
}

// quote returns s in double quotes, with anything unprintable escaped.
func quote(s string) string {
	return strconv.Quote(s)
}

// deliveryID returns X-GitHub-Delivery when it looks like one (GitHub sends a
// GUID): at most 64 letters, digits, '-', '_' or '.'. Anything else is not
// echoed.
func deliveryID(h http.Header) string {
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

var errTooLarge = errors.New("body too large")

// readBody reads body to its end into buf and returns it, or errTooLarge as
// soon as it holds more than limit bytes.
func readBody(body io.Reader, limit int64, buf *[]byte) ([]byte, error) {
	b := (*buf)[:0]
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := body.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if int64(len(b)) > limit {
			return b[:0], errTooLarge
		}
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b[:0], err
		}
	}
}

// Buffers for bodies up to maxPooled bytes are reused; larger ones are left
// to the garbage collector, so the pool never pins much memory.
const maxPooled = 64 << 10

var buffers = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// getBuffer returns a buffer with room for contentLength bytes and the read
// that reports the end, but never more than firstAlloc up front: a declared
// length is a promise of the client's, and memory for more grows only as
// bytes arrive.
func getBuffer(contentLength int64) *[]byte {
	buf := buffers.Get().(*[]byte)
	if need := int(min(contentLength, firstAlloc)) + 1; contentLength >= 0 && cap(*buf) < need {
		*buf = make([]byte, 0, need)
	}
	return buf
}

// firstAlloc bounds what getBuffer allocates before a body's bytes arrive.
const firstAlloc = 64 << 10

func putBuffer(buf *[]byte) {
	if cap(*buf) <= maxPooled {
		*buf = (*buf)[:0]
		buffers.Put(buf)
	}
}
