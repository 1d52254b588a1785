package delivery

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Secrets of the forges' fixtures: Gitea's captured deliveries were signed
// with giteaSecret (testdata/gitea/README.md).
const (
	giteaSecret  = "s3cret-s3cret-s3cret"
	forgeSecret  = "a forge's secret, for tests"
	gitlabToken  = "glpat-like plain token of a hook"
	signingToken = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" // Standard Webhooks' test key
)

// forgeFixture returns testdata/<forge>/<name>.
func forgeFixture(tb testing.TB, forge, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", forge, name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// capturedHeaders returns the headers a real Gitea sent with a captured
// delivery (testdata/gitea/<name>.headers.json).
func capturedHeaders(tb testing.TB, name string) http.Header {
	tb.Helper()
	var m map[string]string
	if err := json.Unmarshal(forgeFixture(tb, "gitea", name+".headers.json"), &m); err != nil {
		tb.Fatal(err)
	}
	h := http.Header{}
	for k, v := range m {
		h.Set(k, v)
	}
	return h
}

// readWith reads body, in pieces of 7 bytes, as f reads a delivery with
// headers h.
func readWith(f Forge, h http.Header, want Kind, body []byte) (Event, error) {
	head, err := f.Head(h, want)
	if err != nil {
		return Event{}, err
	}
	rd := head.Body()
	defer rd.Close()
	for len(body) > 0 {
		n := min(7, len(body))
		rd.Scan(append([]byte(nil), body[:n]...))
		body = body[n:]
	}
	return rd.Finish()
}

func hexMAC(secret string, parts ...[]byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	for _, p := range parts {
		mac.Write(p)
	}
	return hex.EncodeToString(mac.Sum(nil))
}

// wantErr fails t unless err is an *Error wrapping want (nil: no error).
func wantErr(t *testing.T, err, want error) {
	t.Helper()
	var e *Error
	switch {
	case want == nil && err != nil:
		t.Fatalf("error %v, want none", err)
	case want != nil && (!errors.As(err, &e) || !errors.Is(err, want)):
		t.Fatalf("error %v, want an *Error wrapping %v", err, want)
	}
}

const all = Push | Ping | Check | PullRequest

// TestGiteaCaptured: the deliveries a real Gitea 1.27.3 sent, with their
// headers, verify and read as what they say; with Forgejo's headers alone
// too; never with GitHub's headers alone, an empty or a wrong signature.
func TestGiteaCaptured(t *testing.T) {
	body := forgeFixture(t, "gitea", "captured-push.json")
	secrets := [][]byte{[]byte("another secret"), []byte(giteaSecret)}
	for _, f := range []*Gitea{NewGitea(secrets), NewForgejo(secrets)} {
		ev, err := readWith(f, capturedHeaders(t, "captured-push"), all, body)
		wantErr(t, err, nil)
		if ev.Kind != Push || ev.Repository != "t/demo" || ev.Ref != "refs/heads/main" ||
			ev.After != "72ae2b21fa241758ce4092249788941d6f9d255a" || ev.Deleted || ev.DefaultBranch != "main" ||
			ev.ID != "e1d95aa6-2598-4c20-a3b1-21a702d6f09c" || ev.Name != "push" {
			t.Errorf("forgejo %v: %+v", f.forgejo, ev)
		}
	}

	// Forgejo's own headers alone.
	h := http.Header{}
	for k, v := range capturedHeaders(t, "captured-push") {
		if rest, ok := strings.CutPrefix(k, "X-Gitea-"); ok {
			h["X-Forgejo-"+rest] = v
		} else if k == "Content-Type" {
			h[k] = v
		}
	}
	for _, f := range []*Gitea{NewGitea(secrets), NewForgejo(secrets)} {
		ev, err := readWith(f, h, all, body)
		wantErr(t, err, nil)
		if ev.Kind != Push || ev.ID != "e1d95aa6-2598-4c20-a3b1-21a702d6f09c" {
			t.Errorf("forgejo headers alone, forgejo %v: %+v", f.forgejo, ev)
		}
	}
	if NewForgejo(nil).IDHeader() != "X-Forgejo-Delivery" || NewGitea(nil).IDHeader() != "X-Gitea-Delivery" {
		t.Error("IDHeader")
	}

	g := NewGitea(secrets)
	for _, tc := range []struct {
		name string
		edit func(h http.Header)
		err  error
		msg  string
	}{
		{"no signature", func(h http.Header) { h.Del("X-Gitea-Signature") }, ErrUnsigned, "missing X-Gitea-Signature header"},
		{"GitHub's and Gogs' headers only", func(h http.Header) { h.Del("X-Gitea-Signature") }, ErrUnsigned, ""},
		{"empty signature (no secret on the hook)", func(h http.Header) { h.Set("X-Gitea-Signature", "") }, ErrUnsigned, ""},
		{"empty signatures, both", func(h http.Header) { h.Set("X-Gitea-Signature", ""); h.Set("X-Forgejo-Signature", "") }, ErrUnsigned, ""},
		{"wrong signature", func(h http.Header) { h.Set("X-Gitea-Signature", hexMAC("wrong", body)) }, ErrSignature, "signature mismatch"},
		{"prefixed signature", func(h http.Header) { h.Set("X-Gitea-Signature", "sha256="+hexMAC(giteaSecret, body)) }, ErrSignature, ""},
		{"short signature", func(h http.Header) { h.Set("X-Gitea-Signature", hexMAC(giteaSecret, body)[:62]) }, ErrSignature, ""},
		{"no event", func(h http.Header) { h.Del("X-Gitea-Event") }, ErrNoEvent, "missing X-Gitea-Event header"},
		{"text/plain", func(h http.Header) { h.Set("Content-Type", "text/plain") }, ErrContentType, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := capturedHeaders(t, "captured-push")
			tc.edit(h)
			_, err := readWith(g, h, all, body)
			wantErr(t, err, tc.err)
			if !strings.HasPrefix(err.Error(), tc.msg) {
				t.Errorf("error %q, want %q", err, tc.msg)
			}
		})
	}
	// A body changed by one byte.
	changed := append([]byte(nil), body...)
	changed[len(changed)-2] = ' '
	_, err := readWith(g, capturedHeaders(t, "captured-push"), all, changed)
	wantErr(t, err, ErrSignature)
}

// giteaHeaders returns the headers of a Gitea delivery of event, body
// signed with forgeSecret.
func giteaHeaders(event string, signed []byte) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("X-Gitea-Event", event)
	h.Set("X-Gitea-Delivery", "0f0c3a9c-6c48-4d2b-8bba-0e6f1d3b5a71")
	h.Set("X-Gitea-Signature", hexMAC(forgeSecret, signed))
	return h
}

// edited returns the JSON of b with edit applied.
func edited(tb testing.TB, b []byte, edit func(p map[string]any)) []byte {
	tb.Helper()
	var p map[string]any
	if err := json.Unmarshal(b, &p); err != nil {
		tb.Fatal(err)
	}
	edit(p)
	out, err := json.Marshal(p)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// TestGiteaEvents: each Gitea event normalised: a deletion (delete event,
// or a push to zeros), a test delivery, a form, pull requests.
func TestGiteaEvents(t *testing.T) {
	g := NewGitea([][]byte{[]byte(forgeSecret)})
	push := forgeFixture(t, "gitea", "captured-push.json")
	zeros := strings.Repeat("0", 40)

	del := forgeFixture(t, "gitea", "delete-branch.json")
	ev, err := readWith(g, giteaHeaders("delete", del), all, del)
	wantErr(t, err, nil)
	if ev.Kind != Push || !ev.Deleted || ev.Ref != "refs/heads/feature" || ev.Repository != "t/demo" {
		t.Errorf("delete: %+v", ev)
	}
	tag := edited(t, del, func(p map[string]any) { p["ref_type"] = "tag"; p["ref"] = "v1" })
	if ev, _ := readWith(g, giteaHeaders("delete", tag), all, tag); ev.Ref != "refs/tags/v1" || !ev.Deleted {
		t.Errorf("delete of a tag: %+v", ev)
	}

	gone := edited(t, push, func(p map[string]any) { p["before"] = p["after"]; p["after"] = zeros })
	if ev, _ := readWith(g, giteaHeaders("push", gone), all, gone); ev.Kind != Push || !ev.Deleted {
		t.Errorf("push to zeros: %+v", ev)
	}

	// Gitea's "Test Delivery" button: a push of a fake commit of zeros.
	test := edited(t, push, func(p map[string]any) { p["before"] = zeros; p["after"] = zeros })
	ev, err = readWith(g, giteaHeaders("push", test), all, test)
	wantErr(t, err, nil)
	if ev.Kind != Ping || ev.Repository != "t/demo" {
		t.Errorf("test delivery: %+v", ev)
	}
	if ev, _ := readWith(g, giteaHeaders("push", test), Push, test); ev.Kind != Push {
		t.Errorf("test delivery when pings are not wanted: %+v", ev)
	}

	// A form: Gitea signs the JSON in its payload field.
	form := []byte("payload=" + url.QueryEscape(string(push)))
	h := giteaHeaders("push", push)
	h.Set("Content-Type", "application/x-www-form-urlencoded")
	ev, err = readWith(g, h, all, form)
	wantErr(t, err, nil)
	if ev.Kind != Push || ev.Ref != "refs/heads/main" {
		t.Errorf("form: %+v", ev)
	}
	h.Set("X-Gitea-Signature", hexMAC(forgeSecret, form))
	_, err = readWith(g, h, all, form)
	wantErr(t, err, ErrSignature)

	pr := forgeFixture(t, "gitea", "captured-pull_request-opened.json")
	ev, err = readWith(g, giteaHeaders("pull_request", pr), all, pr)
	wantErr(t, err, nil)
	want := PullRequestEvent{Number: 1, Action: "opened", Base: "main", Head: "d756bd84ee0b0edbffd9439c3131a2b398d48563", HeadRepository: "t/demo"}
	if ev.Kind != PullRequest || ev.PullRequest == nil || *ev.PullRequest != want || ev.Repository != "t/demo" {
		t.Errorf("pull request: %+v %+v", ev, ev.PullRequest)
	}
	sync := edited(t, pr, func(p map[string]any) {
		p["action"] = "synchronized"
		p["pull_request"].(map[string]any)["head"].(map[string]any)["repo"].(map[string]any)["full_name"] = "someone/demo"
		p["pull_request"].(map[string]any)["draft"] = true
	})
	ev, err = readWith(g, giteaHeaders("pull_request", sync), all, sync)
	wantErr(t, err, nil)
	if p := ev.PullRequest; p == nil || p.Action != "synchronize" || !p.Fork || !p.Draft || p.HeadRepository != "someone/demo" {
		t.Errorf("synchronized from a fork: %+v", p)
	}
	if ev, _ := readWith(g, giteaHeaders("pull_request", pr), Push|Ping, pr); ev.Kind != Other {
		t.Errorf("pull request not wanted: %+v", ev)
	}
	bad := edited(t, pr, func(p map[string]any) { p["number"] = 1.5 })
	_, err = readWith(g, giteaHeaders("pull_request", bad), all, bad)
	wantErr(t, err, ErrPayload)
	if ev, _ := readWith(g, giteaHeaders("create", del), all, del); ev.Kind != Other {
		t.Errorf("create: %+v", ev)
	}
}

// gitlabHeaders returns the headers of a GitLab delivery of event with the
// plain token.
func gitlabHeaders(event, token string) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("X-Gitlab-Event", event)
	h.Set("X-Gitlab-Event-UUID", "6b7ea4a4-4c5c-4e66-bd39-2a8b5d8e4f10")
	if token != "" {
		h.Set("X-Gitlab-Token", token)
	}
	return h
}

// TestGitLabToken: GitLab's plain token, and its events normalised.
func TestGitLabToken(t *testing.T) {
	g, err := NewGitLab([][]byte{[]byte("old token"), []byte(gitlabToken)})
	if err != nil {
		t.Fatal(err)
	}
	push := forgeFixture(t, "gitlab", "push.json")
	ev, err := readWith(g, gitlabHeaders("Push Hook", gitlabToken), all, push)
	wantErr(t, err, nil)
	if ev.Kind != Push || ev.Repository != "mike/diaspora" || ev.Ref != "refs/heads/master" || ev.DefaultBranch != "master" ||
		ev.After != "da1560886d4f094c3e6c9ef40349f7d38b5d27d7" || ev.Deleted || ev.ID != "6b7ea4a4-4c5c-4e66-bd39-2a8b5d8e4f10" {
		t.Errorf("push: %+v", ev)
	}
	for _, tc := range []struct {
		name, token string
		err         error
		msg         string
	}{
		{"no token", "", ErrUnsigned, "missing X-Gitlab-Token header"},
		{"wrong token", "not " + gitlabToken, ErrSignature, "token mismatch"},
		{"token's prefix", gitlabToken[:10], ErrSignature, ""},
		{"token longer", gitlabToken + "x", ErrSignature, ""},
	} {
		_, err := readWith(g, gitlabHeaders("Push Hook", tc.token), all, push)
		wantErr(t, err, tc.err)
		if !strings.HasPrefix(err.Error(), tc.msg) {
			t.Errorf("%s: error %q, want %q", tc.name, err, tc.msg)
		}
	}
	h := gitlabHeaders("Push Hook", "")
	h["X-Gitlab-Token"] = []string{""}
	_, err = readWith(g, h, all, push)
	wantErr(t, err, ErrUnsigned)

	del := forgeFixture(t, "gitlab", "push-branch-delete.json")
	if ev, err := readWith(g, gitlabHeaders("Push Hook", gitlabToken), all, del); err != nil || ev.Kind != Push || !ev.Deleted {
		t.Errorf("deletion: %+v %v", ev, err)
	}
	tag := forgeFixture(t, "gitlab", "tag_push.json")
	if ev, err := readWith(g, gitlabHeaders("Tag Push Hook", gitlabToken), all, tag); err != nil || !strings.HasPrefix(ev.Ref, "refs/tags/") {
		t.Errorf("tag: %+v %v", ev, err)
	}
	mr := forgeFixture(t, "gitlab", "merge_request-open.json")
	ev, err = readWith(g, gitlabHeaders("Merge Request Hook", gitlabToken), all, mr)
	wantErr(t, err, nil)
	want := PullRequestEvent{Number: 1, Action: "opened", Base: "master", Head: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
		HeadRepository: "awesome_space/awesome_project", Fork: true}
	if ev.Kind != PullRequest || ev.PullRequest == nil || *ev.PullRequest != want || ev.Repository != "mike/diaspora" {
		t.Errorf("merge request: %+v %+v", ev, ev.PullRequest)
	}
	for action, normal := range map[string]string{"update": "synchronize", "merge": "closed", "close": "closed", "reopen": "reopened", "approved": "approved"} {
		b := edited(t, mr, func(p map[string]any) { p["object_attributes"].(map[string]any)["action"] = action })
		if ev, _ := readWith(g, gitlabHeaders("Merge Request Hook", gitlabToken), all, b); ev.PullRequest == nil || ev.PullRequest.Action != normal {
			t.Errorf("action %s: %+v", action, ev.PullRequest)
		}
	}
	if ev, _ := readWith(g, gitlabHeaders("Note Hook", gitlabToken), all, mr); ev.Kind != Other || ev.Name != "Note Hook" {
		t.Errorf("note: %+v", ev)
	}
	h = gitlabHeaders("Push Hook", gitlabToken)
	h.Set("Content-Type", "application/x-www-form-urlencoded")
	_, err = readWith(g, h, all, push)
	wantErr(t, err, ErrContentType)
}

// signed returns the headers of a GitLab delivery signed with the signing
// token at the time at, as Standard Webhooks says.
func signed(t *testing.T, id string, at int64, body []byte) http.Header {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(signingToken, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + strconv.FormatInt(at, 10) + "."))
	mac.Write(body)
	h := gitlabHeaders("Push Hook", "")
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", strconv.FormatInt(at, 10))
	h.Set("webhook-signature", "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	return h
}

// TestGitLabSigningToken: GitLab's signing token, per Standard Webhooks:
// the specification's own test vector, the 5-minute window, several
// signatures, and what is refused.
func TestGitLabSigningToken(t *testing.T) {
	const at = 1614265330
	clock := func(d time.Duration) GitLabOption {
		return GitLabClock(func() time.Time { return time.Unix(at, 0).Add(d) })
	}
	secrets := [][]byte{[]byte(gitlabToken), []byte(signingToken)}
	g, err := NewGitLab(secrets, clock(0))
	if err != nil {
		t.Fatal(err)
	}
	// Standard Webhooks' test vector (libraries/go/webhook_test.go, TestWebhookSign).
	vector := []byte(`{"test": 2432232314}`)
	h := gitlabHeaders("System Hook", "")
	h.Set("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set("webhook-timestamp", "1614265330")
	h.Set("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	ev, err := readWith(g, h, all, vector)
	wantErr(t, err, nil)
	if ev.Kind != Other {
		t.Errorf("system hook: %+v", ev)
	}
	if got := signed(t, "msg_p5jXN8AQM9LWM0D4loKWxJek", at, vector).Get("webhook-signature"); got != "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=" {
		t.Fatalf("the test's signer gives %s", got)
	}

	push := forgeFixture(t, "gitlab", "push.json")
	ev, err = readWith(g, signed(t, "6b7ea4a4", at, push), all, push)
	wantErr(t, err, nil)
	if ev.Kind != Push || ev.Repository != "mike/diaspora" {
		t.Errorf("signed push: %+v", ev)
	}

	for _, tc := range []struct {
		name  string
		clock time.Duration
		edit  func(h http.Header)
		err   error
	}{
		{"4m59s late", 4*time.Minute + 59*time.Second, nil, nil},
		{"4m59s early", -4*time.Minute - 59*time.Second, nil, nil},
		{"5m1s late", 5*time.Minute + time.Second, nil, ErrSignature},
		{"5m1s early", -5*time.Minute - time.Second, nil, ErrSignature},
		{"several signatures", 0, func(h http.Header) {
			h.Set("webhook-signature", "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= "+
				h.Get("webhook-signature")+" v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=")
		}, nil},
		{"wrong signature", 0, func(h http.Header) { h.Set("webhook-signature", "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=") }, ErrSignature},
		{"v2 only", 0, func(h http.Header) {
			h.Set("webhook-signature", strings.Replace(h.Get("webhook-signature"), "v1,", "v2,", 1))
		}, ErrSignature},
		{"another id", 0, func(h http.Header) { h.Set("webhook-id", "6b7ea4a5") }, ErrSignature},
		{"another timestamp", 0, func(h http.Header) { h.Set("webhook-timestamp", strconv.Itoa(at+1)) }, ErrSignature},
		{"no id", 0, func(h http.Header) { h.Del("webhook-id") }, ErrUnsigned},
		{"no timestamp", 0, func(h http.Header) { h.Del("webhook-timestamp") }, ErrUnsigned},
		{"timestamp not a number", 0, func(h http.Header) { h.Set("webhook-timestamp", "+1614265330") }, ErrSignature},
		{"no signature, no token", 0, func(h http.Header) { h.Del("webhook-signature") }, ErrUnsigned},
		{"empty signature, token", 0, func(h http.Header) { h.Set("webhook-signature", ""); h.Set("X-Gitlab-Token", gitlabToken) }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := NewGitLab(secrets, clock(tc.clock))
			if err != nil {
				t.Fatal(err)
			}
			h := signed(t, "6b7ea4a4", at, push)
			if tc.edit != nil {
				tc.edit(h)
			}
			_, err = readWith(g, h, all, push)
			wantErr(t, err, tc.err)
		})
	}
	// A body changed after signing.
	_, err = readWith(g, signed(t, "6b7ea4a4", at, push), all, append([]byte(" "), push...))
	wantErr(t, err, ErrSignature)

	// A signing token alone: the plain token is not accepted in its stead.
	only, err := NewGitLab([][]byte{[]byte(signingToken)}, clock(0))
	if err != nil {
		t.Fatal(err)
	}
	_, err = readWith(only, gitlabHeaders("Push Hook", signingToken), all, push)
	wantErr(t, err, ErrUnsigned)
	if _, err := NewGitLab([][]byte{[]byte("whsec_not base64!")}); err == nil || strings.Contains(err.Error(), "not base64!") {
		t.Errorf("a signing token that is not base64: %v", err)
	}
}

// bitbucketHeaders returns the headers of a Bitbucket delivery of event,
// body signed with forgeSecret.
func bitbucketHeaders(event string, body []byte) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("X-Event-Key", event)
	h.Set("X-Request-UUID", "{e2a8c9b5-3f5d-4b1e-9f0a-2c6d7e8f9a01}")
	h.Set("X-Hub-Signature", "sha256="+hexMAC(forgeSecret, body))
	return h
}

// TestBitbucket: Bitbucket's signature, and its pushes of one or several
// refs normalised.
func TestBitbucket(t *testing.T) {
	b := NewBitbucket([][]byte{[]byte(forgeSecret)})
	push := forgeFixture(t, "bitbucket", "push.json")
	ev, err := readWith(b, bitbucketHeaders("repo:push", push), all, push)
	wantErr(t, err, nil)
	if ev.Kind != Push || ev.Repository != "brydzewski/foo" || ev.Ref != "refs/heads/master" ||
		ev.After != "141977fedf5cf35aa290ac87d4b5177ac4cd9de1" || ev.Deleted || ev.ID != "{e2a8c9b5-3f5d-4b1e-9f0a-2c6d7e8f9a01}" {
		t.Errorf("push: %+v", ev)
	}
	del := forgeFixture(t, "bitbucket", "push-branch-delete.json")
	ev, err = readWith(b, bitbucketHeaders("repo:push", del), all, del)
	wantErr(t, err, nil)
	if ev.Kind != Push || ev.Ref != "refs/heads/develop" || !ev.Deleted {
		t.Errorf("deletion: %+v", ev)
	}

	for _, tc := range []struct {
		name string
		sig  string
		err  error
	}{
		{"no signature", "-", ErrUnsigned},
		{"empty signature", "", ErrUnsigned},
		{"prefix alone", "sha256=", ErrUnsigned},
		{"sha1", "sha1=0f394b4d9839683cae0417c7ba8ef194ba6daebf", ErrSignature},
		{"bare hex", hexMAC(forgeSecret, push), ErrSignature},
		{"wrong secret", "sha256=" + hexMAC("wrong", push), ErrSignature},
	} {
		h := bitbucketHeaders("repo:push", push)
		if tc.sig == "-" {
			h.Del("X-Hub-Signature")
		} else {
			h["X-Hub-Signature"] = []string{tc.sig}
		}
		_, err := readWith(b, h, all, push)
		if err == nil || !errors.Is(err, tc.err) {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.err)
		}
	}

	// One push of three refs: a tag, the deletion of develop, master.
	var p map[string]any
	json.Unmarshal(push, &p)
	change := p["push"].(map[string]any)["changes"].([]any)[0].(map[string]any)
	var d map[string]any
	json.Unmarshal(del, &d)
	deletion := d["push"].(map[string]any)["changes"].([]any)[0]
	tagChange := map[string]any{"new": map[string]any{"type": "tag", "name": "v1", "target": map[string]any{"hash": strings.Repeat("a", 40)}}, "old": nil}
	p["push"].(map[string]any)["changes"] = []any{tagChange, deletion, change}
	many, _ := json.Marshal(p)
	ev, err = readWith(b, bitbucketHeaders("repo:push", many), all, many)
	wantErr(t, err, nil)
	want := []Change{{Ref: "refs/tags/v1", After: strings.Repeat("a", 40)}, {Ref: "refs/heads/master", After: "141977fedf5cf35aa290ac87d4b5177ac4cd9de1"},
		{Ref: "refs/heads/develop", Deleted: true}}
	if len(ev.Changes) != 3 || ev.Changes[0] != want[0] || ev.Changes[1] != want[1] || ev.Changes[2] != want[2] || ev.MoreChanges {
		t.Fatalf("changes %+v, want %+v", ev.Changes, want)
	}
	if e := ev.ForBranch("master"); e.Ref != "refs/heads/master" || e.After != want[1].After || e.Deleted {
		t.Errorf("for master: %+v", e)
	}
	if e := ev.ForBranch("develop"); e.Ref != "refs/heads/develop" || !e.Deleted {
		t.Errorf("for develop: %+v", e)
	}
	if e := ev.ForBranch("main"); e.Ref != "refs/tags/v1" {
		t.Errorf("for main, not pushed: %+v", e)
	}

	// More refs than are kept: the branch may be among those left out.
	var changes []any
	for i := range 60 {
		changes = append(changes, map[string]any{"new": map[string]any{"type": "branch", "name": "topic-" + strconv.Itoa(i), "target": map[string]any{"hash": strings.Repeat("b", 40)}}})
	}
	p["push"].(map[string]any)["changes"] = changes
	many, _ = json.Marshal(p)
	ev, err = readWith(b, bitbucketHeaders("repo:push", many), all, many)
	wantErr(t, err, nil)
	if !ev.MoreChanges || len(ev.Changes) == 0 {
		t.Fatalf("%d changes kept, more: %v", len(ev.Changes), ev.MoreChanges)
	}
	if e := ev.ForBranch("master"); e.Ref != "refs/heads/master" || e.Deleted {
		t.Errorf("for master, maybe left out: %+v", e)
	}

	ping := []byte(`{"test":true}`)
	if ev, err := readWith(b, bitbucketHeaders("diagnostics:ping", ping), all, ping); err != nil || ev.Kind != Ping {
		t.Errorf("ping: %+v %v", ev, err)
	}
	if ev, err := readWith(b, bitbucketHeaders("pullrequest:created", ping), all, ping); err != nil || ev.Kind != Other {
		t.Errorf("pull request: %+v %v", ev, err)
	}
}

// TestForgesReadMemoryBounded: each forge's reader holds no more of an
// 8 MiB body than GitHub's does (TestReaderMemoryBounded): huge strings,
// thousands of Bitbucket changes, a signed GitLab delivery.
func TestForgesReadMemoryBounded(t *testing.T) {
	change := `{"new":{"type":"branch","name":"topic","target":{"hash":"` + strings.Repeat("b", 40) + `"}},"old":null},`
	bitbucket := []byte(`{"zen":"` + strings.Repeat("a", 4<<20) + `","repository":{"full_name":"o/r"},"push":{"changes":[` +
		strings.Repeat(change, (4<<20)/len(change)) + `{"new":{"type":"branch","name":"main","target":{"hash":"` + strings.Repeat("c", 40) + `"}}}]}}`)
	pad := []byte(`{"zen":"` + strings.Repeat("a", 4<<20) + `","x":[` + strings.Repeat(`{"ref":"no"},`, (4<<20)/13) +
		`1],"ref":"refs/heads/main","after":"` + strings.Repeat("d", 40) + `","before":"` + strings.Repeat("e", 40) +
		`","repository":{"full_name":"o/r"},"project":{"path_with_namespace":"o/r"}}`)
	gitlab, err := NewGitLab([][]byte{[]byte(signingToken)}, GitLabClock(func() time.Time { return time.Unix(1614265330, 0) }))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		forge  Forge
		header http.Header
		body   []byte
	}{
		{"gitea", NewGitea([][]byte{[]byte(forgeSecret)}), giteaHeaders("push", pad), pad},
		{"gitlab signed", gitlab, signed(t, "6b7ea4a4", 1614265330, pad), pad},
		{"bitbucket", NewBitbucket([][]byte{[]byte(forgeSecret)}), bitbucketHeaders("repo:push", bitbucket), bitbucket},
	} {
		t.Run(tc.name, func(t *testing.T) {
			buf := make([]byte, 8<<10)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			head, err := tc.forge.Head(tc.header, Push)
			if err != nil {
				t.Fatal(err)
			}
			rd := head.Body()
			for b := tc.body; len(b) > 0; {
				n := copy(buf, b)
				rd.Scan(buf[:n])
				b = b[n:]
			}
			ev, err := rd.Finish()
			rd.Close()
			runtime.ReadMemStats(&after)
			if err != nil || ev.Kind != Push || ev.Repository != "o/r" {
				t.Fatalf("event %+v, error %v", ev, err)
			}
			if tc.name == "bitbucket" && (!ev.MoreChanges || ev.ForBranch("main").Ref != "refs/heads/main") {
				t.Errorf("a push of thousands of refs: more %v, for main %+v", ev.MoreChanges, ev.ForBranch("main"))
			}
			allocated := after.TotalAlloc - before.TotalAlloc
			t.Logf("reading %d MiB allocated %d KiB", len(tc.body)>>20, allocated>>10)
			if limit := uint64(64 << 10); allocated > limit {
				t.Errorf("reading %d MiB allocated %d KiB, want under %d KiB", len(tc.body)>>20, allocated>>10, limit>>10)
			}
		})
	}
}
