package caddywebhook

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

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
	unread   bool // the body was not read to its end: close the connection
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
	if a.unread {
		// Otherwise Go's server reads up to 256 KiB of what is left of the
		// body before it answers, waiting on a client that may never send
		// it.
		hdr["Connection"] = []string{"close"}
	}
	w.WriteHeader(a.status)
	w.Write(append(body, '\n'))
}

// handle runs the checks of a delivery in order (method, size, signature,
// event, content type, payload), and decides what it means. The first check
// that fails answers; until the signature is verified, an answer names only
// the check.
func (h *Handler) handle(w http.ResponseWriter, r *http.Request) answer {
	a, done := h.check(w, r)
	// Only HTTP/1 reads what a handler left of a body before answering
	// (HTTP/2 resets the stream), and there Connection: close stops it.
	a.unread = !done && r.ContentLength != 0 && r.ProtoMajor == 1
	a.Delivery = deliveryID(r.Header)
	// The log line names the event even when the delivery failed a check
	// before it: the header is not trusted, only shown (and cut short).
	a.event = first(r.Header, keyEvent)
	if len(a.event) > 64 {
		a.event = a.event[:64]
	}
	return a
}

// Body formats, by Content-Type.
const (
	formatOther = iota
	formatJSON
	formatForm
)

// check answers r; done reports whether its body was read to the end.
//
// Everything that can be checked before the body is read is: method, the
// declared length, and that the signature header is well-formed. Then the
// body streams, in bodyBuffer pieces, through the HMACs of every secret and
// a decoder that keeps only the fields of payloadSchema; nothing it says is
// used before the signature over all of it has verified.
func (h *Handler) check(w http.ResponseWriter, r *http.Request) (a answer, done bool) {
	if r.Method != http.MethodPost {
		return failure(http.StatusMethodNotAllowed, "method not allowed"), false
	}
	if r.ContentLength > h.maxBody {
		return failure(http.StatusRequestEntityTooLarge, "body too large"), false
	}
	sig, ok := r.Header[keySignature]
	if !ok || len(sig) == 0 {
		return failure(http.StatusUnauthorized, "missing "+headerSignature+" header"), false
	}
	want, ok := parseSignature(sig[0])
	if !ok {
		return failure(http.StatusUnauthorized, "signature mismatch"), false
	}
	event := first(r.Header, keyEvent)
	mediaType, _, _ := strings.Cut(first(r.Header, "Content-Type"), ";")
	mediaType = strings.TrimSpace(mediaType)
	format := formatOther
	switch {
	case strings.EqualFold(mediaType, "application/json"):
		format = formatJSON
	case strings.EqualFold(mediaType, "application/x-www-form-urlencoded"):
		format = formatForm
	}

	budget := h.bodies
	if budget == nil { // a handler made outside Caddy
		budget = bodies
	}
	// Taking the slot away makes the body's reads fail at once.
	rc := http.NewResponseController(w)
	slot := budget.acquire(r.Context(), clientKey(clientAddr(r)), func() { rc.SetReadDeadline(time.Unix(1, 0)) })
	if slot == nil {
		return tooMany(), false
	}
	defer budget.release(slot)
	st := bodyStates.Get().(*bodyState)
	defer bodyStates.Put(st)
	// The event header picks the fields kept; it is trusted only once the
	// signature verified, and decides then with the same header.
	st.json.resetFor(schemaFor(event))
	st.form.reset(st.json)
	st.macs = h.verifier.begin(st.macs)

	a, done = h.read(rc, r, st, slot, format)
	// The MACs go back to their pools whatever happened.
	verified := h.verifier.end(st.macs, &want)
	if !done {
		return a, false
	}
	if !verified {
		return failure(http.StatusUnauthorized, "signature mismatch"), true
	}

	// From here on the delivery comes from GitHub: say exactly why.
	a = h.decideBody(event, mediaType, format, st)
	a.verified = true
	return a, true
}

// read streams the body of r, which holds slot, through st. It returns
// done once the body was read to its end, or else the answer saying why
// not.
func (h *Handler) read(rc *http.ResponseController, r *http.Request, st *bodyState, slot *slot, format int) (a answer, done bool) {
	if r.Body == nil {
		return answer{}, true
	}
	if ownReadDeadline(r) {
		if rc.SetReadDeadline(time.Now().Add(bodyTimeout)) == nil {
			defer rc.SetReadDeadline(time.Time{})
		}
		// The slot may have been taken before this deadline replaced
		// the one in the past that taking it set.
		if slot.evicted.Load() {
			return tooMany(), false
		}
	}
	var total int64
	for {
		n, err := r.Body.Read(st.buf[:])
		if total += int64(n); total > h.maxBody {
			return failure(http.StatusRequestEntityTooLarge, "body too large"), false
		}
		if n > 0 {
			chunk := st.buf[:n]
			for _, mac := range st.macs {
				mac.Write(chunk)
			}
			switch format { // the form decodes in place: after the MACs
			case formatJSON:
				st.json.Write(chunk)
			case formatForm:
				st.form.Write(chunk)
			}
		}
		switch {
		case err == io.EOF:
			return answer{}, true
		case slot.evicted.Load():
			return tooMany(), false
		case err == nil:
		case isTimeout(err):
			return failure(http.StatusRequestTimeout, "reading body timed out"), false
		default:
			return failure(http.StatusBadRequest, "reading body failed"), false
		}
	}
}

// tooMany is the answer to a delivery that got no body slot, or lost it.
func tooMany() answer {
	return failure(http.StatusServiceUnavailable, "too many deliveries at once")
}

// clientAddr returns the address of r's client, as Caddy determined it
// (through trusted proxies), or else its peer's.
func clientAddr(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	return r.RemoteAddr
}

// ownReadDeadline reports whether reading the body of r is bounded by
// bodyTimeout: unless the Caddy server serving it sets its own read_body
// timeout (ReadTimeout).
func ownReadDeadline(r *http.Request) bool {
	srv, _ := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	return srv == nil || srv.ReadTimeout <= 0
}

// isTimeout reports whether err is a read deadline passing.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// decideBody answers a verified delivery from the body st has read.
func (h *Handler) decideBody(event, mediaType string, format int, st *bodyState) answer {
	if event == "" {
		return failure(http.StatusBadRequest, "missing "+headerEvent+" header")
	}
	switch format {
	case formatOther:
		return failure(http.StatusUnsupportedMediaType,
			"content type "+quote(mediaType)+" is not application/json or application/x-www-form-urlencoded")
	case formatForm:
		found, err := st.form.Finish()
		if err != nil {
			return failure(http.StatusBadRequest, "invalid form: "+err.Error())
		}
		if !found {
			return failure(http.StatusBadRequest, "form has no payload field")
		}
	}
	if err := st.json.Finish(); err != nil {
		return failure(http.StatusBadRequest, "invalid payload: "+err.Error())
	}
	_, isCheck := checkEvents[event]
	if event != "push" && event != "ping" && !(isCheck && h.checks) {
		return skipped("event " + quote(event) + " not handled")
	}
	if err := st.json.TypeErr(); err != nil {
		return failure(http.StatusBadRequest, "invalid payload: "+err.Error())
	}
	if isCheck {
		return h.decideCheck(event, st.json)
	}
	var p payload
	p.Ref = st.json.String(fieldRef)
	p.Deleted = st.json.Bool(fieldDeleted)
	p.Repository.FullName = st.json.String(fieldFullName)
	p.Repository.DefaultBranch = st.json.String(fieldDefaultBranch)
	return h.decide(event, p)
}

// payloadSchema names the fields of a push or ping delivery (and of any
// event not handled) that decisions read, by their index (fieldRef...). To
// read more, add them here and a constant below, in the same order. No
// schema may have more than four fields: budget.go counts on it.
var payloadSchema = newJSONSchema(
	jsonField{"ref", kindString},
	jsonField{"deleted", kindBool},
	jsonField{"repository.full_name", kindString},
	jsonField{"repository.default_branch", kindString},
)

const (
	fieldRef = iota
	fieldDeleted
	fieldFullName
	fieldDefaultBranch
)

// checkEvents are the events that say a check changed, read with
// require_checks, each with its schema: the fields of every one are in the
// same order (fieldCheckState...). The status event names the branches
// holding its commit (at most 10) in an array.
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
		jsonField{state, kindString},
		jsonField{"repository.full_name", kindString},
		jsonField{"repository.default_branch", kindString},
		jsonField{branch, kindString},
	)
}

const (
	fieldCheckState = iota // action, or a status's state
	fieldCheckRepo
	fieldCheckDefaultBranch
	fieldCheckBranch // the branch the check ran on; a status's branches
)

// schemaFor returns the schema of event's deliveries.
func schemaFor(event string) *jsonSchema {
	if c, ok := checkEvents[event]; ok {
		return c.schema
	}
	return payloadSchema
}

// allSchemas are the schemas a body may be read with.
func allSchemas() []*jsonSchema {
	list := []*jsonSchema{payloadSchema}
	for _, c := range checkEvents {
		list = append(list, c.schema)
	}
	return list
}

// payload is what the handler reads of a push or ping delivery (the fields
// of payloadSchema); the rest of the JSON is checked for validity and
// skipped. None of it reaches the deployer: a delivery only says "look
// again".
type payload struct {
	Ref        string
	Deleted    bool
	Repository struct {
		FullName      string
		DefaultBranch string
	}
}

// decide answers a verified delivery of event, and wakes the deployer for a
// push to the branch it deploys.
func (h *Handler) decide(event string, p payload) answer {
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

// decideCheck answers a verified delivery of a check event (checkEvents),
// with require_checks on: a check of the deployed branch that completed
// wakes the deployer to look at its tip's checks again. Only a completed
// check can let a waiting tip go live, so one just requested or still
// running is skipped: waking on those would only spend API requests.
func (h *Handler) decideCheck(event string, p *jsonScanner) answer {
	what := checkEvents[event].what
	repo := p.String(fieldCheckRepo)
	if !strings.EqualFold(repo, h.Repo) {
		return skipped(what + " in repository " + quote(repo) + "; this endpoint deploys " + quote(h.Repo))
	}
	branch := h.branch()
	if branch == "" {
		branch = p.String(fieldCheckDefaultBranch)
	}
	state := p.String(fieldCheckState)
	if event == "status" {
		if state == "pending" {
			return skipped("status " + quote(state) + "; only a finished check can let a tip go live")
		}
		branches, complete := p.Strings(fieldCheckBranch)
		// With too many branches to keep, the deployer looks: a wake only
		// makes it look again.
		if complete && !slices.Contains(branches, branch) {
			return skipped("status of a commit not on branch " + quote(branch))
		}
	} else {
		if state != "completed" {
			return skipped(what + " " + quote(state) + "; only a completed check can let a tip go live")
		}
		if on := p.String(fieldCheckBranch); on != branch {
			return skipped(what + " on branch " + quote(on) + "; this endpoint deploys " + quote(branch))
		}
	}
	h.wake(deployer.ReasonChecks)
	return answer{Result: resultQueued, Repo: h.Repo, Branch: branch, status: http.StatusAccepted}
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
