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

	"github.com/caddy-webhooks/caddy-github-webhook/delivery"
	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
)

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
	idKey    string // the forge's header of the delivery's id, canonical
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
	if a.Delivery != "" && a.idKey != "" {
		hdr[a.idKey] = []string{a.Delivery}
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
	a.Delivery = h.forge.ID(r.Header)
	a.idKey = h.idKey
	// The log line names the event even when the delivery failed a check
	// before it: the header is not trusted, only shown (and cut short).
	a.event = h.forge.EventName(r.Header)
	return a
}

// check answers r; done reports whether its body was read to the end.
//
// Everything that can be checked before the body is read is: method, the
// declared length, and that the signature header is well-formed. Then the
// body streams, in bodyBuffer pieces, through the delivery package's Reader
// (the HMACs of every secret and a decoder that keeps only the fields an
// event carries); nothing it says is used before the signature over all of
// it has verified.
func (h *Handler) check(w http.ResponseWriter, r *http.Request) (a answer, done bool) {
	if r.Method != http.MethodPost {
		return failure(http.StatusMethodNotAllowed, "method not allowed"), false
	}
	if r.ContentLength > h.maxBody {
		return failure(http.StatusRequestEntityTooLarge, "body too large"), false
	}
	want := delivery.Push | delivery.Ping
	if h.checks {
		want |= delivery.Check
	}
	if h.Previews != nil {
		want |= delivery.PullRequest
	}
	head, err := h.forge.Head(r.Header, want)
	if err != nil {
		return refused(err), false
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
	body := head.Body()
	defer body.Close()

	a, done = h.read(rc, r, st, body, slot)
	if !done {
		return a, false
	}
	// Past the signature, the delivery comes from GitHub: answers say
	// exactly why.
	ev, err := body.Finish()
	if err != nil {
		a = refused(err)
		a.verified = !errors.Is(err, delivery.ErrSignature)
		return a, true
	}
	a = h.decide(ev)
	a.verified = true
	return a, true
}

// refused is the answer to a delivery that failed a check of the delivery
// package.
func refused(err error) answer {
	status := http.StatusBadRequest
	switch {
	case errors.Is(err, delivery.ErrUnsigned), errors.Is(err, delivery.ErrSignature):
		status = http.StatusUnauthorized
	case errors.Is(err, delivery.ErrContentType):
		status = http.StatusUnsupportedMediaType
	}
	return failure(status, err.Error())
}

// read streams the body of r, which holds slot, through st's buffer into
// body. It returns done once the body was read to its end, or else the
// answer saying why not.
func (h *Handler) read(rc *http.ResponseController, r *http.Request, st *bodyState, body *delivery.Reader, slot *slot) (a answer, done bool) {
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
			body.Scan(st.buf[:n])
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

// decide answers a verified delivery, and wakes the deployer for a push to
// the branch it deploys, or for a check of that branch (decideCheck).
func (h *Handler) decide(ev delivery.Event) answer {
	switch ev.Kind {
	case delivery.Check:
		return h.decideCheck(ev)
	case delivery.PullRequest:
		return h.decidePullRequest(ev)
	case delivery.Ping, delivery.Push:
	default:
		return skipped("event " + quote(ev.Name) + " not handled")
	}
	sameRepo := strings.EqualFold(ev.Repository, h.Repo)
	branch := h.branch()
	if branch == "" && sameRepo {
		branch = ev.DefaultBranch
	}
	ev = ev.ForBranch(branch) // a push of several refs (Bitbucket)

	if ev.Kind == delivery.Ping {
		a := answer{Result: resultPong, Repo: h.Repo, Branch: branch, status: http.StatusOK}
		if ev.Repository != "" && !sameRepo {
			a.Reason = "this hook is on " + quote(ev.Repository) + " but this endpoint deploys " + quote(h.Repo)
		}
		return a
	}

	switch {
	case !sameRepo:
		return skipped("push to repository " + quote(ev.Repository) + "; this endpoint deploys " + quote(h.Repo))
	case strings.HasPrefix(ev.Ref, "refs/tags/"):
		return skipped("push to tag " + quote(strings.TrimPrefix(ev.Ref, "refs/tags/")) + "; only branches are deployed")
	case !strings.HasPrefix(ev.Ref, "refs/heads/"):
		return skipped("push to " + quote(ev.Ref) + ", which is not a branch")
	}
	pushed := strings.TrimPrefix(ev.Ref, "refs/heads/")
	switch {
	case branch != "" && pushed != branch:
		return skipped("push to branch " + quote(pushed) + "; this endpoint deploys " + quote(branch))
	case ev.Deleted:
		return skipped("branch " + quote(pushed) + " was deleted")
	}
	h.wake(deployer.ReasonDelivery)
	return answer{Result: resultQueued, Repo: h.Repo, Branch: pushed, status: http.StatusAccepted}
}

// decideCheck answers a verified delivery of a check event, with
// require_checks on: a check of the deployed branch that finished wakes the
// deployer to look at its tip's checks again. Only a finished check can let
// a waiting tip go live, so one just requested or still running is
// skipped: waking on those would only spend API requests.
func (h *Handler) decideCheck(ev delivery.Event) answer {
	c := ev.Check
	if !strings.EqualFold(ev.Repository, h.Repo) {
		return skipped(c.What + " in repository " + quote(ev.Repository) + "; this endpoint deploys " + quote(h.Repo))
	}
	branch := h.branch()
	if branch == "" {
		branch = ev.DefaultBranch
	}
	if c.CommitStatus {
		if !c.Finished {
			return skipped(c.What + " " + quote(c.State) + "; only a finished check can let a tip go live")
		}
		// With too many branches to keep, the deployer looks: a wake only
		// makes it look again.
		if c.AllBranches && !slices.Contains(c.Branches, branch) {
			return skipped(c.What + " of a commit not on branch " + quote(branch))
		}
	} else {
		if !c.Finished {
			return skipped(c.What + " " + quote(c.State) + "; only a completed check can let a tip go live")
		}
		if c.Branch != branch {
			return skipped(c.What + " on branch " + quote(c.Branch) + "; this endpoint deploys " + quote(branch))
		}
	}
	h.wake(deployer.ReasonChecks)
	return answer{Result: resultQueued, Repo: h.Repo, Branch: branch, status: http.StatusAccepted}
}

// quote returns s in double quotes, with anything unprintable escaped.
func quote(s string) string {
	return strconv.Quote(s)
}
