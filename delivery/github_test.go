package delivery

import (
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

const (
	testSecret    = "shhh, it is a test secret"
	testOldSecret = "the secret before rotation"
	testID        = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
)

// read sends body through a GitHub with both test secrets, in pieces of
// step bytes (0: all at once), as a delivery of event signed with secret
// ("" leaves the signature out), and returns what Finish says. An error of
// Head is returned as Finish's would be.
func read(t *testing.T, want Kind, event, contentType, secret string, body []byte, step int) (Event, error) {
	t.Helper()
	g := NewGitHub([][]byte{[]byte(testOldSecret), []byte(testSecret)})
	h := http.Header{}
	h.Set("Content-Type", contentType)
	if event != "" {
		h.Set(GitHubEventHeader, event)
	}
	h.Set(GitHubDeliveryHeader, testID)
	if secret != "" {
		h.Set(GitHubSignatureHeader, testkit.Sign(secret, body))
	}
	head, err := g.Head(h, want)
	if err != nil {
		return Event{}, err
	}
	rd := head.Body()
	defer rd.Close()
	buf := make([]byte, len(body)) // Scan may overwrite what it is given
	copy(buf, body)
	if step == 0 {
		step = len(buf) + 1
	}
	for b := buf; len(b) > 0; {
		n := min(step, len(b))
		rd.Scan(b[:n])
		b = b[n:]
	}
	return rd.Finish()
}

// TestGitHubEvents: what GitHub's deliveries say, as an Event, whatever
// pieces the body comes in; an event of a kind not asked for is Other and
// only its syntax is checked.
func TestGitHubEvents(t *testing.T) {
	const tip = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
	all := Push | Ping | Check
	for _, tc := range []struct {
		name    string
		event   string
		fixture string
		want    Kind // the kinds asked for; default all
		form    bool // send it form-encoded
		ev      Event
	}{
		{name: "push", event: "push", fixture: "push-branch.json", ev: Event{Kind: Push,
			Repository: "Codertocat/Hello-World", DefaultBranch: "master", Ref: "refs/heads/master", After: tip}},
		{name: "push, form-encoded", event: "push", fixture: "push-branch.json", form: true, ev: Event{Kind: Push,
			Repository: "Codertocat/Hello-World", DefaultBranch: "master", Ref: "refs/heads/master", After: tip}},
		{name: "branch deleted", event: "push", fixture: "push-branch-deleted.json", ev: Event{Kind: Push,
			Repository: "Codertocat/Hello-World", DefaultBranch: "master", Ref: "refs/heads/master",
			After: strings.Repeat("0", 40), Deleted: true}},
		{name: "tag", event: "push", fixture: "push-tag.json", ev: Event{Kind: Push,
			Repository: "Codertocat/Hello-World", DefaultBranch: "master", Ref: "refs/tags/simple-tag", After: tip}},
		{name: "ping", event: "ping", fixture: "ping-repo.json", ev: Event{Kind: Ping,
			Repository: "Octocoders/Hello-World", DefaultBranch: "master"}},
		{name: "ping of an organisation", event: "ping", fixture: "ping-org.json", ev: Event{Kind: Ping}},
		{name: "check run", event: "check_run", fixture: "check_run-completed.json", ev: Event{Kind: Check,
			Repository: "Codertocat/Hello-World", DefaultBranch: "master",
			Check: &CheckEvent{What: "check run", State: "completed", Finished: true, Branch: "changes"}}},
		{name: "check suite", event: "check_suite", fixture: "check_suite-completed.json", ev: Event{Kind: Check,
			Repository: "Codertocat/Hello-World", DefaultBranch: "master",
			Check: &CheckEvent{What: "check suite", State: "completed", Finished: true, Branch: "changes"}}},
		{name: "workflow run requested", event: "workflow_run", fixture: "workflow_run-requested.json", ev: Event{Kind: Check,
			Repository: "octo-org/octo-repo", DefaultBranch: "master",
			Check: &CheckEvent{What: "workflow run", State: "requested", Branch: "master"}}},
		{name: "status", event: "status", fixture: "status.json", ev: Event{Kind: Check,
			Repository: "Codertocat/Hello-World", DefaultBranch: "master",
			Check: &CheckEvent{What: "status", State: "success", Finished: true, CommitStatus: true,
				Branches: []string{"master", "changes", "gh-pages"}, AllBranches: true}}},
		{name: "check run, checks not asked for", event: "check_run", fixture: "check_run-completed.json", want: Push | Ping,
			ev: Event{Kind: Other}},
		{name: "push, pushes not asked for", event: "push", fixture: "push-branch.json", want: Ping,
			ev: Event{Kind: Other}},
		{name: "issues", event: "issues", fixture: "issues-opened.json", ev: Event{Kind: Other}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			if want == 0 {
				want = all
			}
			body, contentType := fixture(t, tc.fixture), "application/json"
			if tc.form {
				body, contentType = []byte("payload="+url.QueryEscape(string(body))), "application/x-www-form-urlencoded"
			}
			tc.ev.Name, tc.ev.ID = tc.event, testID
			for _, step := range []int{0, 1, 7} {
				ev, err := read(t, want, tc.event, contentType, testSecret, body, step)
				if err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
				if !reflect.DeepEqual(ev, tc.ev) {
					t.Errorf("step %d: event %+v (check %+v), want %+v (check %+v)", step, ev, ev.Check, tc.ev, tc.ev.Check)
				}
			}
		})
	}
}

// TestGitHubRefusals: each check that fails, in DESIGN.md's order, is an
// *Error wrapping its sentinel, with the message the handler answers.
func TestGitHubRefusals(t *testing.T) {
	push := fixture(t, "push-branch.json")
	all := Push | Ping | Check
	for _, tc := range []struct {
		name        string
		want        Kind
		event       string
		contentType string
		secret      string
		signature   string // instead of signing with secret
		body        []byte
		err         error
		msg         string
	}{
		{name: "no signature", event: "push", body: push, err: ErrUnsigned, msg: "missing X-Hub-Signature-256 header"},
		{name: "malformed signature", event: "push", body: push, signature: "sha256=xyz", err: ErrSignature, msg: "signature mismatch"},
		{name: "SHA-1 signature", event: "push", body: push, signature: "sha1=" + strings.Repeat("0", 40), err: ErrSignature, msg: "signature mismatch"},
		{name: "wrong secret", event: "push", body: push, secret: "not " + testSecret, err: ErrSignature, msg: "signature mismatch"},
		{name: "wrong secret, not JSON either", event: "push", body: []byte("<xml/>"), secret: "x", err: ErrSignature, msg: "signature mismatch"},
		{name: "no event", body: push, err: ErrNoEvent, msg: "missing X-GitHub-Event header"},
		{name: "text/plain", event: "push", contentType: "text/plain", body: push, err: ErrContentType,
			msg: `content type "text/plain" is not application/json or application/x-www-form-urlencoded`},
		{name: "not JSON", event: "issues", body: []byte(`<xml/>`), err: ErrPayload, msg: "invalid payload: invalid character '<'"},
		{name: "form without payload", event: "push", contentType: "application/x-www-form-urlencoded", body: []byte("other=1"),
			err: ErrPayload, msg: "form has no payload field"},
		{name: "bad form", event: "push", contentType: "application/x-www-form-urlencoded", body: []byte("payload=%zz"),
			err: ErrPayload, msg: `invalid form: invalid URL escape "%zz"`},
		{name: "ref a number", event: "push", body: []byte(`{"ref":1}`), err: ErrPayload, msg: "invalid payload: ref is a number, not a string"},
		{name: "new tip too long", event: "push", body: []byte(`{"after":"` + strings.Repeat("a", 65) + `"}`),
			err: ErrPayload, msg: "invalid payload: after is longer than 64 bytes"},
		{name: "status branches of the wrong type", event: "status", body: []byte(`{"branches":["master"]}`),
			err: ErrPayload, msg: "invalid payload: branches[] is a string, not an object"},
		{name: "ref a number, pushes not asked for", want: Ping, event: "push", body: []byte(`{"ref":1}`)},
		{name: "status branches of the wrong type, checks not asked for", want: Push | Ping, event: "status",
			body: []byte(`{"branches":["master"]}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			if want == 0 {
				want = all
			}
			g := NewGitHub([][]byte{[]byte(testSecret)})
			h := http.Header{}
			h.Set("Content-Type", "application/json")
			if tc.contentType != "" {
				h.Set("Content-Type", tc.contentType)
			}
			if tc.event != "" {
				h.Set(GitHubEventHeader, tc.event)
			}
			secret := tc.secret
			if secret == "" {
				secret = testSecret
			}
			switch {
			case tc.signature != "":
				h.Set(GitHubSignatureHeader, tc.signature)
			case tc.err != ErrUnsigned:
				h.Set(GitHubSignatureHeader, testkit.Sign(secret, tc.body))
			}
			ev, err := func() (Event, error) {
				head, err := g.Head(h, want)
				if err != nil {
					return Event{}, err
				}
				rd := head.Body()
				defer rd.Close()
				rd.Scan(append([]byte(nil), tc.body...))
				return rd.Finish()
			}()
			if tc.err == nil {
				if err != nil || ev.Kind != Other {
					t.Fatalf("event %+v, error %v; want an event of kind other", ev, err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, tc.err) || !strings.HasPrefix(err.Error(), tc.msg) {
				t.Fatalf("error %v (%T), want an *Error wrapping %v, saying %q", err, err, tc.err, tc.msg)
			}
		})
	}
}

// TestReaderReused: a Reader from the pool keeps nothing of the delivery it
// read before, and Close without Finish gives its hashes back.
func TestReaderReused(t *testing.T) {
	if _, err := read(t, Push, "push", "application/json", testSecret, fixture(t, "push-branch.json"), 0); err != nil {
		t.Fatal(err)
	}
	g := NewGitHub([][]byte{[]byte(testSecret)})
	h := http.Header{}
	h.Set(GitHubSignatureHeader, testkit.Sign(testSecret, nil))
	head, err := g.Head(h, Push)
	if err != nil {
		t.Fatal(err)
	}
	head.Body().Close() // a body cut short: never finished
	body := []byte(`{"ref":"refs/heads/dev"}`)
	ev, err := read(t, Push, "push", "application/json", testSecret, body, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Event{Kind: Push, Name: "push", ID: testID, Ref: "refs/heads/dev"}); !reflect.DeepEqual(ev, want) {
		t.Errorf("event %+v, want %+v", ev, want)
	}
}

// TestReaderMemoryBounded: reading a signed body of 8 MiB whose one string
// is 4 MiB long, in 8 KiB pieces as the handler does, allocates a few KiB
// (a Reader and its hashes, when the pool has none), not the body. For
// comparison, encoding/json's Decoder.Token allocates about 4 times the
// body's size on such a document (the token is buffered whole).
func TestReaderMemoryBounded(t *testing.T) {
	body := []byte(`{"zen":"` + strings.Repeat("a", 4<<20) + `","ref":"refs/heads/main","x":[` +
		strings.Repeat(`{"ref":"no"},`, (4<<20)/13) + `1]}`)
	g := NewGitHub([][]byte{[]byte(testSecret)})
	h := http.Header{}
	h.Set(GitHubSignatureHeader, testkit.Sign(testSecret, body))
	h.Set("Content-Type", "application/json")
	h.Set(GitHubEventHeader, "push")
	buf := make([]byte, 8<<10)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	head, err := g.Head(h, Push)
	if err != nil {
		t.Fatal(err)
	}
	rd := head.Body()
	for b := body; len(b) > 0; {
		n := copy(buf, b)
		rd.Scan(buf[:n])
		b = b[n:]
	}
	ev, err := rd.Finish()
	rd.Close()
	runtime.ReadMemStats(&after)
	if err != nil || ev.Ref != "refs/heads/main" {
		t.Fatalf("event %+v, error %v", ev, err)
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("reading %d MiB allocated %d KiB", len(body)>>20, allocated>>10)
	if limit := uint64(64 << 10); allocated > limit {
		t.Errorf("reading %d MiB allocated %d KiB, want under %d KiB", len(body)>>20, allocated>>10, limit>>10)
	}
}

// TestDeliveryID: an id that does not look like GitHub's is not echoed.
func TestDeliveryID(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{testID, testID},
		{"", ""},
		{"abc\x00def", ""},
		{`"><script>`, ""},
		{strings.Repeat("a", 65), ""},
	} {
		h := http.Header{}
		h.Set(GitHubDeliveryHeader, c.in)
		if got := (&GitHub{}).ID(h); got != c.want {
			t.Errorf("ID(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestSchemasFitReaderSize: ReaderSize counts the kept fields and 2 KiB for
// the rest; a Reader's scanner has room for every schema and holds no more.
func TestSchemasFitReaderSize(t *testing.T) {
	s := newJSONScanner(payloadSchema, everySchema()...)
	kept := 0
	for _, v := range s.values {
		kept += cap(v)
	}
	if want := ReaderSize - 2<<10; kept > want {
		t.Errorf("a Reader keeps fields of %d bytes; ReaderSize counts %d", kept, want)
	}
	for _, sc := range everySchema() {
		s.resetFor(sc) // panics if a schema does not fit
	}
}
