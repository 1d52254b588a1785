package caddywebhook

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-webhooks/caddy-github-webhook/delivery"
	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// What the test handlers are configured with. The repository is written in
// another case than in the payloads, which GitHub spells Codertocat/Hello-World.
const (
	testRepo       = "codertocat/hello-world"
	testBranch     = "master"
	testSecret     = "shhh, it is a test secret"
	testOldSecret  = "the secret before rotation"
	testMaxBody    = 64 << 10
	testDeliveryID = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
)

// fixture returns a payload of testdata/github, as GitHub sent it.
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := testkit.Fixture(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// deliveryCase is one row of DESIGN.md's request table: a request and the
// answer it must get.
type deliveryCase struct {
	name          string
	method        string // default POST
	event         string // X-GitHub-Event; none when empty
	contentType   string // default application/json
	body          []byte
	unknownLength bool   // send the body chunked, without Content-Length
	signWith      string // the secret that signs the body; no signature when empty
	signature     string // X-Hub-Signature-256 as written, instead of signWith
	sha1          bool   // also send the SHA-1 X-Hub-Signature GitHub sends

	status   int
	result   string
	contains string // in the answer's error or reason
	wakes    int    // wakes of the deployer it causes
}

// deliveryCases returns the request table. Every case is sent with
// testDeliveryID.
func deliveryCases(t testing.TB) []deliveryCase {
	push := fixture(t, "push-branch.json")
	form := []byte("payload=" + url.QueryEscape(string(push)))
	tooBig := bytes.Repeat([]byte("a"), testMaxBody+1)
	return []deliveryCase{
		{name: "GET", method: http.MethodGet, event: "push", body: nil, signWith: testSecret,
			status: 405, result: "error", contains: "method not allowed"},
		{name: "PUT of a signed push", method: http.MethodPut, event: "push", body: push, signWith: testSecret,
			status: 405, result: "error", contains: "method not allowed"},
		{name: "body over max_body", event: "push", body: tooBig, signWith: testSecret,
			status: 413, result: "error", contains: "body too large"},
		{name: "body over max_body, unsigned", event: "push", body: tooBig,
			status: 413, result: "error", contains: "body too large"},
		{name: "body over max_body, chunked", event: "push", body: tooBig, unknownLength: true, signWith: testSecret,
			status: 413, result: "error", contains: "body too large"},
		{name: "no signature", event: "push", body: push,
			status: 401, result: "error", contains: "missing X-Hub-Signature-256 header"},
		{name: "SHA-1 signature only", event: "push", body: push, sha1: true,
			status: 401, result: "error", contains: "missing X-Hub-Signature-256 header"},
		{name: "wrong secret", event: "push", body: push, signWith: "not " + testSecret,
			status: 401, result: "error", contains: "signature mismatch"},
		{name: "malformed signature", event: "push", body: push, signature: "sha256=xyz",
			status: 401, result: "error", contains: "signature mismatch"},
		{name: "signature of the payload, not of the form", event: "push", contentType: "application/x-www-form-urlencoded",
			body: form, signature: testkit.Sign(testSecret, push),
			status: 401, result: "error", contains: "signature mismatch"},
		{name: "no event header", body: push, signWith: testSecret,
			status: 400, result: "error", contains: "missing X-GitHub-Event header"},
		{name: "text/plain", event: "push", contentType: "text/plain", body: push, signWith: testSecret,
			status: 415, result: "error", contains: `"text/plain"`},
		{name: "no content type", event: "push", contentType: "-", body: push, signWith: testSecret,
			status: 415, result: "error", contains: "application/json"},
		{name: "not JSON", event: "push", body: []byte(`{"ref":`), signWith: testSecret,
			status: 400, result: "error", contains: "invalid payload"},
		{name: "not JSON, other event", event: "issues", body: []byte(`<xml/>`), signWith: testSecret,
			status: 400, result: "error", contains: "invalid payload"},
		{name: "field of the wrong type", event: "push", body: []byte(`{"ref":1}`), signWith: testSecret,
			status: 400, result: "error", contains: "invalid payload"},
		{name: "new tip of the wrong type", event: "push", body: []byte(`{"ref":"refs/heads/master","after":1}`), signWith: testSecret,
			status: 400, result: "error", contains: "invalid payload: after is a number"},
		{name: "form without payload", event: "push", contentType: "application/x-www-form-urlencoded",
			body: []byte("other=1"), signWith: testSecret,
			status: 400, result: "error", contains: "no payload field"},
		{name: "ping of a repository hook", event: "ping", body: fixture(t, "ping-repo.json"), signWith: testSecret,
			status: 200, result: "pong", contains: `"Octocoders/Hello-World"`},
		{name: "ping of an organisation hook", event: "ping", body: fixture(t, "ping-org.json"), signWith: testSecret,
			status: 200, result: "pong"},
		{name: "push to another repository", event: "push", body: fixture(t, "push-other-repo.json"), signWith: testSecret,
			status: 200, result: "skipped", contains: `repository "Someone/Other-Repo"`},
		{name: "push to another branch", event: "push", body: fixture(t, "push-other-branch.json"), signWith: testSecret,
			status: 200, result: "skipped", contains: `branch "dev"; this endpoint deploys "master"`},
		{name: "tag", event: "push", body: fixture(t, "push-tag.json"), signWith: testSecret,
			status: 200, result: "skipped", contains: `tag "simple-tag"`},
		{name: "tag deleted", event: "push", body: fixture(t, "push-tag-deleted.json"), signWith: testSecret,
			status: 200, result: "skipped", contains: `tag "simple-tag"`},
		{name: "branch deleted", event: "push", body: fixture(t, "push-branch-deleted.json"), signWith: testSecret,
			status: 200, result: "skipped", contains: `branch "master" was deleted`},
		{name: "issues event", event: "issues", body: fixture(t, "issues-opened.json"), signWith: testSecret,
			status: 200, result: "skipped", contains: `event "issues" not handled`},
		{name: "workflow_run event", event: "workflow_run", body: fixture(t, "workflow_run-completed.json"), signWith: testSecret,
			status: 200, result: "skipped", contains: `event "workflow_run" not handled`},
		{name: "push to the branch", event: "push", body: push, signWith: testSecret,
			status: 202, result: "queued", wakes: 1},
		{name: "push to the branch, old secret", event: "push", body: push, signWith: testOldSecret,
			status: 202, result: "queued", wakes: 1},
		{name: "push to the branch, form-encoded", event: "push", contentType: "application/x-www-form-urlencoded",
			body: form, signWith: testSecret,
			status: 202, result: "queued", wakes: 1},
		{name: "push to the branch, JSON with charset", event: "push", contentType: "Application/JSON; charset=utf-8",
			body: push, signWith: testSecret,
			status: 202, result: "queued", wakes: 1},
	}
}

// request returns the request of c, to be sent to target.
func (c deliveryCase) request(t testing.TB, target string) *http.Request {
	t.Helper()
	method := c.method
	if method == "" {
		method = http.MethodPost
	}
	var body io.Reader = bytes.NewReader(c.body)
	if c.unknownLength {
		body = io.MultiReader(body) // hides the length
	}
	r, err := http.NewRequest(method, target, body)
	if err != nil {
		t.Fatal(err)
	}
	if c.unknownLength {
		r.ContentLength = -1
	}
	switch c.contentType {
	case "":
		r.Header.Set("Content-Type", "application/json")
	case "-":
	default:
		r.Header.Set("Content-Type", c.contentType)
	}
	if c.event != "" {
		r.Header.Set("X-GitHub-Event", c.event)
	}
	r.Header.Set("X-GitHub-Delivery", testDeliveryID)
	r.Header.Set("User-Agent", "GitHub-Hookshot/044aadd")
	switch {
	case c.signature != "":
		r.Header.Set("X-Hub-Signature-256", c.signature)
	case c.signWith != "":
		r.Header.Set("X-Hub-Signature-256", testkit.Sign(c.signWith, c.body))
	}
	if c.sha1 {
		r.Header.Set("X-Hub-Signature", "sha1=0000000000000000000000000000000000000000")
	}
	return r
}

// check reports how an answer differs from what c expects.
func (c deliveryCase) check(t testing.TB, status int, header http.Header, body []byte) {
	t.Helper()
	if status != c.status {
		t.Errorf("status %d, want %d; body %s", status, c.status, body)
	}
	if ct := header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if got := header.Get("X-GitHub-Delivery"); got != testDeliveryID {
		t.Errorf("X-GitHub-Delivery %q, want %q", got, testDeliveryID)
	}
	if c.status == http.StatusMethodNotAllowed && header.Get("Allow") != "POST" {
		t.Errorf("Allow %q, want POST", header.Get("Allow"))
	}
	var a map[string]string
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("answer %q is not a JSON object of strings: %v", body, err)
	}
	if a["result"] != c.result {
		t.Errorf("result %q, want %q; body %s", a["result"], c.result, body)
	}
	if a["delivery"] != testDeliveryID {
		t.Errorf("delivery %q, want %q", a["delivery"], testDeliveryID)
	}
	if why := a["error"] + a["reason"]; !strings.Contains(why, c.contains) {
		t.Errorf("answer %s does not say %q", body, c.contains)
	}
	if c.status == 401 || c.status == 405 || c.status == 413 {
		// Before the signature is verified, an answer names only the check.
		for k := range a {
			if k != "result" && k != "error" && k != "delivery" {
				t.Errorf("unverified answer has %q: %s", k, body)
			}
		}
	}
	switch c.result {
	case "pong", "queued":
		if !strings.EqualFold(a["repo"], testRepo) || a["branch"] != testBranch {
			t.Errorf("answer %s does not name %s and %s", body, testRepo, testBranch)
		}
	}
}

// newTestHandler returns a handler as Provision would leave it, with its
// deployer replaced by a counter of wakes and a fixed branch.
func newTestHandler(branch string, logger *zap.Logger) (*Handler, *atomic.Int64) {
	var wakes atomic.Int64
	h := &Handler{
		Repo:    testRepo,
		logger:  logger,
		maxBody: testMaxBody,
		wake: func(r deployer.Reason) {
			if r != deployer.ReasonDelivery {
				panic("woken for " + r)
			}
			wakes.Add(1)
		},
		branch: func() string { return branch },
	}
	h.setForge(delivery.NewGitHub([][]byte{[]byte(testOldSecret), []byte(testSecret)}))
	return h, &wakes
}

// TestServeHTTP runs the request table against a handler whose deployer is a
// counter: the answers, and which rows wake it.
func TestServeHTTP(t *testing.T) {
	for _, c := range deliveryCases(t) {
		t.Run(c.name, func(t *testing.T) {
			h, wakes := newTestHandler(testBranch, zap.NewNop())
			w := httptest.NewRecorder()
			r := c.request(t, "http://example.com/_github")
			if err := h.ServeHTTP(w, r, nil); err != nil {
				t.Fatalf("ServeHTTP: %v", err)
			}
			c.check(t, w.Code, w.Header(), w.Body.Bytes())
			if n := wakes.Load(); n != int64(c.wakes) {
				t.Errorf("%d wakes, want %d", n, c.wakes)
			}
		})
	}
}

// TestBranchFallback: until the deployer knows the remote's default branch,
// pushes are compared with the default branch the delivery names.
func TestBranchFallback(t *testing.T) {
	for _, c := range []struct {
		fixture, result, contains string
	}{
		{"push-branch.json", "queued", ""},
		{"push-other-branch.json", "skipped", `this endpoint deploys "master"`},
		{"push-other-repo.json", "skipped", "Someone/Other-Repo"},
	} {
		t.Run(c.fixture, func(t *testing.T) {
			h, wakes := newTestHandler("", zap.NewNop())
			w := httptest.NewRecorder()
			r := deliveryCase{event: "push", body: fixture(t, c.fixture), signWith: testSecret}.request(t, "/")
			h.ServeHTTP(w, r, nil)
			var a answer
			if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil {
				t.Fatal(err)
			}
			if a.Result != c.result || !strings.Contains(a.Reason, c.contains) {
				t.Errorf("answer %s, want %s with %q", w.Body, c.result, c.contains)
			}
			want := int64(0)
			if c.result == "queued" {
				want = 1
			}
			if wakes.Load() != want {
				t.Errorf("%d wakes, want %d", wakes.Load(), want)
			}
		})
	}
}

// TestLogLine: one line per delivery, with its id, event and result.
func TestLogLine(t *testing.T) {
	var logs bytes.Buffer
	h, _ := newTestHandler(testBranch, newBufferLogger(&logs))
	for _, c := range deliveryCases(t) {
		h.ServeHTTP(httptest.NewRecorder(), c.request(t, "/"), nil)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != len(deliveryCases(t)) {
		t.Fatalf("%d log lines for %d deliveries:\n%s", len(lines), len(deliveryCases(t)), logs.String())
	}
	for i, c := range deliveryCases(t) {
		var line map[string]any
		if err := json.Unmarshal([]byte(lines[i]), &line); err != nil {
			t.Fatal(err)
		}
		if line["delivery"] != testDeliveryID || line["event"] != c.event || line["result"] != c.result ||
			line["status"] != float64(c.status) {
			t.Errorf("%s: log line %s", c.name, lines[i])
		}
		if strings.Contains(lines[i], testSecret) || strings.Contains(lines[i], testOldSecret) {
			t.Errorf("%s: log line holds a secret: %s", c.name, lines[i])
		}
	}
}

// Signatures FuzzServeHTTP puts on a body (its sign argument, modulo 4);
// with sign&4, the body is sent without a Content-Length.
const (
	fuzzSignatureAsIs     = iota // the signature argument, often malformed
	fuzzSignedWithSecret         // signed with testSecret
	fuzzSignedWithOld            // signed with testOldSecret
	fuzzSignedWrongSecret        // signed with a secret the handler does not have
)

// FuzzServeHTTP sends arbitrary deliveries, most of them signed, so that
// what lies past the signature check is fuzzed too, as each forge sends
// them (GitHub's, and fuzzForgeDelivery for the others). The handler must never
// panic, must always answer JSON with a status of the table, must never
// wake the deployer for a delivery without a valid signature, and must wake
// it exactly for a verified push of the deployed branch of the right
// repository that is neither a deletion nor a tag (as encoding/json and
// url.ParseQuery read the payload).
func FuzzServeHTTP(f *testing.F) {
	for _, c := range deliveryCases(f) {
		method := c.method
		if method == "" {
			method = http.MethodPost
		}
		r := c.request(f, "/")
		mode := fuzzSignatureAsIs
		switch {
		case c.signature != "":
		case c.signWith == testSecret:
			mode = fuzzSignedWithSecret
		case c.signWith == testOldSecret:
			mode = fuzzSignedWithOld
		case c.signWith != "":
			mode = fuzzSignedWrongSecret
		}
		if c.unknownLength {
			mode |= 4
		}
		f.Add(method, r.Header.Get("Content-Type"), c.event, c.signature, testDeliveryID, uint8(mode), c.body)
	}
	for _, name := range []string{"push-branch.json", "push-other-branch.json", "push-branch-deleted.json", "push-tag.json", "ping-repo.json"} {
		body := fixture(f, name)
		f.Add("POST", "application/json", "push", "", "", uint8(fuzzSignedWithSecret), body)
		f.Add("POST", "application/x-www-form-urlencoded", "push", "", "", uint8(fuzzSignedWithOld|4),
			[]byte("payload="+url.QueryEscape(string(body))))
		f.Add("POST", "application/json", "push", testkit.Sign(testSecret, body[1:]), "", uint8(fuzzSignatureAsIs), body)
	}
	f.Add("POST", "application/json", "push", "", "", uint8(fuzzSignedWithSecret),
		[]byte(`{"ref":"refs/heads/master","repository":{"full_name":"CODERTOCAT/Hello-World"}}`))
	addForgeSeeds(f)
	allowed := []int{200, 202, 400, 401, 405, 413, 415}
	f.Fuzz(func(t *testing.T, method, contentType, event, signature, delivery string, mode uint8, body []byte) {
		// Bits 3 and up of mode pick the forge (fuzzForges).
		if forge := fuzzForges[int(mode>>3)%len(fuzzForges)]; forge != forgeGitHub {
			fuzzForgeDelivery(t, forge, method, contentType, event, signature, delivery, mode, body)
			return
		}
		switch mode % 4 {
		case fuzzSignedWithSecret:
			signature = testkit.Sign(testSecret, body)
		case fuzzSignedWithOld:
			signature = testkit.Sign(testOldSecret, body)
		case fuzzSignedWrongSecret:
			signature = testkit.Sign("not "+testSecret, body)
		}
		h, wakes := newTestHandler(testBranch, zap.NewNop())
		r := httptest.NewRequest(http.MethodPost, "/_github", bytes.NewReader(body))
		r.Method = method
		if mode&4 != 0 {
			r.ContentLength = -1
		}
		r.Header.Set("Content-Type", contentType)
		r.Header.Set("X-GitHub-Event", event)
		r.Header.Set("X-Hub-Signature-256", signature)
		r.Header.Set("X-GitHub-Delivery", delivery)
		w := httptest.NewRecorder()
		if err := h.ServeHTTP(w, r, nil); err != nil {
			t.Fatalf("ServeHTTP: %v", err)
		}
		if !slices.Contains(allowed, w.Code) {
			t.Errorf("status %d", w.Code)
		}
		if !json.Valid(w.Body.Bytes()) {
			t.Errorf("answer is not JSON: %q", w.Body)
		}
		if wakes.Load() > 1 {
			t.Errorf("%d wakes for one delivery", wakes.Load())
		}
		valid := strings.EqualFold(signature, testkit.Sign(testSecret, body)) || strings.EqualFold(signature, testkit.Sign(testOldSecret, body))
		if !valid {
			if wakes.Load() != 0 {
				t.Fatalf("woken by a delivery without a valid signature: %q", signature)
			}
			if w.Code < 400 {
				t.Errorf("status %d for a delivery without a valid signature", w.Code)
			}
			return
		}
		want, exact := shouldWake(method, contentType, event, body)
		if exact && want != (wakes.Load() == 1) {
			t.Fatalf("%d wakes, want %v: %d %s", wakes.Load(), want, w.Code, w.Body)
		}
		if want != (w.Code == http.StatusAccepted) && exact {
			t.Errorf("status %d for a delivery that should wake: %v", w.Code, want)
		}
	})
}

// shouldWake reports whether a validly signed delivery must wake the
// deployer: a POST of a push whose payload (JSON, or a form's payload
// field) holds the deployed branch of the right repository, not deleted,
// as encoding/json and url.ParseQuery read it. exact is false when a key
// of the payload matches a field only case-insensitively (encoding/json
// takes it; the handler, like GitHub, does not).
func shouldWake(method, contentType, event string, body []byte) (wake, exact bool) {
	if method != http.MethodPost || len(body) > testMaxBody || event != "push" {
		return false, true
	}
	mediaType, _, _ := strings.Cut(contentType, ";")
	mediaType = strings.TrimSpace(mediaType)
	data := body
	switch {
	case strings.EqualFold(mediaType, "application/json"):
	case strings.EqualFold(mediaType, "application/x-www-form-urlencoded"):
		form, err := url.ParseQuery(string(body))
		if err != nil || !form.Has("payload") {
			return false, true
		}
		data = []byte(form.Get("payload"))
	default:
		return false, true
	}
	// The lengths the delivery package keeps: a longer value is a type
	// error, answered 400.
	p, typeOK, exact := testkit.DecodePush(data, 1024, 64)
	return typeOK && strings.EqualFold(p.Repository, testRepo) &&
		p.Ref == "refs/heads/"+testBranch && !p.Deleted, exact
}

// newBufferLogger returns a logger writing JSON lines to w.
func newBufferLogger(w io.Writer) *zap.Logger {
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), zap.DebugLevel))
}
