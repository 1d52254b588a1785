package caddywebhook

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// TestForgeDefaults: the default remote and API address of each forge,
// from its base URL.
func TestForgeDefaults(t *testing.T) {
	for _, tc := range []struct {
		forge, base, apiURL string
		remote, api         string
	}{
		{"", "", "", "https://github.com/o/r.git", "https://api.github.com"},
		{"github", "https://github.com/", "", "https://github.com/o/r.git", "https://api.github.com"},
		{"github", "https://ghe.example.com", "", "https://ghe.example.com/o/r.git", "https://ghe.example.com/api/v3"},
		{"gitea", "https://git.example.com/", "", "https://git.example.com/o/r.git", "https://git.example.com/api/v1"},
		{"forgejo", "http://127.0.0.1:3000", "", "http://127.0.0.1:3000/o/r.git", "http://127.0.0.1:3000/api/v1"},
		{"gitlab", "", "", "https://gitlab.com/o/r.git", "https://gitlab.com/api/v4"},
		{"gitlab", "https://example.com/gitlab", "", "https://example.com/gitlab/o/r.git", "https://example.com/gitlab/api/v4"},
		{"gitlab", "https://gitlab.example.com", "https://api.example.com/v4/", "https://gitlab.example.com/o/r.git", "https://api.example.com/v4"},
		{"bitbucket", "", "", "https://bitbucket.org/o/r.git", "https://api.bitbucket.org/2.0"},
	} {
		h := &Handler{Repo: "o/r", Forge: tc.forge, ForgeURL: tc.base, APIURL: tc.apiURL}
		if got := h.deployerConfig("").Remote; got != tc.remote {
			t.Errorf("forge %q %q: remote %q, want %q", tc.forge, tc.base, got, tc.remote)
		}
		if got := h.forgeAPIURL(); got != tc.api {
			t.Errorf("forge %q %q: API %q, want %q", tc.forge, tc.base, got, tc.api)
		}
	}
	// A remote that is set wins.
	h := &Handler{Repo: "o/r", Forge: "gitlab", Remote: "git@gitlab.com:o/r.git"}
	if got := h.deployerConfig("").Remote; got != "git@gitlab.com:o/r.git" {
		t.Errorf("remote %q", got)
	}
}

// TestValidateForge: the forge's name and base URL, and a token never sent
// over http but to a loopback host, whether the URL is the base, remote or
// api_url.
func TestValidateForge(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    Handler
		err  string // a part of the error; none when empty
	}{
		{name: "default", h: Handler{}},
		{name: "gitea", h: Handler{Forge: "gitea", ForgeURL: "https://git.example.com"}},
		{name: "unknown forge", h: Handler{Forge: "sourcehut"}, err: `forge "sourcehut": want one of github, gitea, forgejo, gitlab, bitbucket`},
		{name: "forge in capitals", h: Handler{Forge: "GitLab"}, err: "want one of"},
		{name: "gitea without base", h: Handler{Forge: "gitea"}, err: "forge gitea needs its base URL"},
		{name: "forgejo without base, remote set", h: Handler{Forge: "forgejo", Remote: "https://codeberg.org/o/r.git"}},
		{name: "forgejo without base, deployments", h: Handler{Forge: "forgejo", Remote: "https://codeberg.org/o/r.git",
			Deployments: &Deployments{Environment: "production"}}, err: "needs its base URL"},
		{name: "gitlab with require_checks", h: Handler{Forge: "gitlab", RequireChecks: &RequireChecks{}}},
		{name: "bitbucket with deployments", h: Handler{Forge: "bitbucket", Token: "t", Deployments: &Deployments{Environment: "production"}}},
		{name: "github with deployments", h: Handler{Forge: "github", Deployments: &Deployments{Environment: "production"}}},
		{name: "base not a URL", h: Handler{Forge: "gitlab", ForgeURL: "gitlab.example.com"}, err: "is not an http or https URL"},
		{name: "base with credentials", h: Handler{Forge: "gitlab", ForgeURL: "https://u:pass@gitlab.example.com"}, err: "must not carry credentials"},
		{name: "base with a query", h: Handler{Forge: "gitlab", ForgeURL: "https://gitlab.example.com/?a=b"}, err: "query"},
		{name: "base over http, no token", h: Handler{Forge: "gitea", ForgeURL: "http://git.example.com"}},
		{name: "base over http with a token", h: Handler{Forge: "gitea", ForgeURL: "http://git.example.com", Token: "t"},
			err: `forge gitea base URL "http://git.example.com": a token is sent over http only to a loopback host`},
		{name: "base over http to loopback with a token", h: Handler{Forge: "gitea", ForgeURL: "http://127.0.0.1:3000", Token: "t"}},
		{name: "base over http to localhost with a token", h: Handler{Forge: "forgejo", ForgeURL: "http://localhost:3000/", Token: "t"}},
		{name: "base over http to ::1 with a token", h: Handler{Forge: "gitlab", ForgeURL: "http://[::1]:8080", Token: "t"}},
		{name: "remote over http with a token", h: Handler{Remote: "http://git.example.com/o/r.git", Token: "t"},
			err: `remote "http://git.example.com/o/r.git": a token is sent over http only to a loopback host`},
		{name: "remote over HTTP with a token", h: Handler{Remote: "HTTP://git.example.com/o/r.git", Token: "t"}, err: "loopback"},
		{name: "remote over http to loopback with a token", h: Handler{Remote: "http://127.0.0.1:3000/o/r.git", Token: "t"}},
		{name: "api_url over http with a token", h: Handler{APIURL: "http://ghe.example.com/api/v3", Token: "t"}, err: "api_url"},
		{name: "previews on bitbucket", h: Handler{Forge: "bitbucket", Previews: &Previews{Host: "pr-{number}.example.com"}}, err: "previews are not available with forge bitbucket"},
		{name: "previews on gitlab", h: Handler{Forge: "gitlab", Previews: &Previews{Host: "pr-{number}.example.com"}}},
		{name: "forks label on gitea", h: Handler{Forge: "gitea", ForgeURL: "https://git.example.com",
			Previews: &Previews{Host: "pr-{number}.example.com", ForksLabel: "preview"}}, err: "forks label works on GitHub only"},
		{name: "app on github", h: Handler{App: &GitHubApp{}}},
		{name: "app on gitlab", h: Handler{Forge: "gitlab", App: &GitHubApp{}}, err: "forge gitlab takes a token"},
		{name: "api_url over http to loopback with a token", h: Handler{APIURL: "http://127.0.0.1:8080/api/v3", Token: "t"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.h.validateForge()
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("error %v, want none", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one with %q", err, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), "pass") {
				t.Errorf("error %q quotes the credentials", err)
			}
		})
	}
	if forgePreviewsError("bitbucket") == nil || forgePreviewsError("gitea") != nil || forgePreviewsError("gitlab") != nil {
		t.Error("previews: an error for bitbucket alone")
	}
}

// signingSecret is a GitLab signing token (Standard Webhooks' test key).
const signingSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// forgeFixture returns testdata/<forge>/<name>, as the forge sent it, with
// edit applied to its JSON when edit is not nil.
func forgeFixture(tb testing.TB, forge, name string, edit func(p map[string]any)) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", forge, name))
	if err != nil {
		tb.Fatal(err)
	}
	if edit == nil {
		return b
	}
	var p map[string]any
	if err := json.Unmarshal(b, &p); err != nil {
		tb.Fatal(err)
	}
	edit(p)
	if b, err = json.Marshal(p); err != nil {
		tb.Fatal(err)
	}
	return b
}

// obj returns the object at the path of keys in p.
func obj(p map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		p = p[k].(map[string]any)
	}
	return p
}

// fixtureDir is the testdata folder of a forge (Forgejo's are Gitea's, and
// so are GitLab's signed ones).
func fixtureDir(forge string) string {
	switch forge {
	case forgeForgejo:
		return forgeGitea
	case "gitlab-signed":
		return forgeGitLab
	}
	return forge
}

// forgePush returns a real push payload of forge (testdata/<forge>/) edited
// to say that branch of repo moved from before to after.
func forgePush(tb testing.TB, forge, repo, branch, before, after string) []byte {
	switch fixtureDir(forge) {
	case forgeGitea:
		return forgeFixture(tb, forgeGitea, "captured-push.json", func(p map[string]any) {
			p["ref"], p["before"], p["after"] = "refs/heads/"+branch, before, after
			r := obj(p, "repository")
			r["full_name"], r["default_branch"] = repo, branch
		})
	case forgeGitLab:
		return forgeFixture(tb, forgeGitLab, "push.json", func(p map[string]any) {
			p["ref"], p["before"], p["after"], p["checkout_sha"] = "refs/heads/"+branch, before, after, after
			r := obj(p, "project")
			r["path_with_namespace"], r["default_branch"] = repo, branch
		})
	case forgeBitbucket:
		return forgeFixture(tb, forgeBitbucket, "push.json", func(p map[string]any) {
			obj(p, "repository")["full_name"] = repo
			c := obj(p, "push")["changes"].([]any)[0].(map[string]any)
			n, o := c["new"].(map[string]any), c["old"].(map[string]any)
			n["name"], o["name"] = branch, branch
			obj(n, "target")["hash"], obj(o, "target")["hash"] = after, before
		})
	}
	tb.Fatalf("no push of forge %s", forge)
	return nil
}

// forgeDelivery is a delivery as forge sends it.
type forgeDelivery struct {
	forge string // a forge, or gitlab-signed: GitLab with its signing token
	event string
	body  []byte
	sign  string // valid (default), wrong, missing or empty
	id    string
}

// Delivery ids the tests' forges send.
const forgeDeliveryID = "5c3e1b9a-7f2d-4e8b-9a61-2d4f0c8b7e13"

// request returns the delivery of d, to be sent to target, signed with
// testSecret (GitLab's plain token; signingSecret for gitlab-signed).
func (d forgeDelivery) request(tb testing.TB, target string) *http.Request {
	tb.Helper()
	r, err := http.NewRequest(http.MethodPost, target, bytes.NewReader(d.body))
	if err != nil {
		tb.Fatal(err)
	}
	id := d.id
	if id == "" {
		id = forgeDeliveryID
	}
	secret := testSecret
	if d.sign == "wrong" {
		secret = "not " + testSecret
	}
	h := r.Header
	h.Set("Content-Type", "application/json")
	var key, sig string
	switch d.forge {
	case forgeGitea, forgeForgejo:
		prefix := "X-Gitea-"
		if d.forge == forgeForgejo {
			prefix = "X-Forgejo-" // Forgejo's own headers alone
		}
		h.Set(prefix+"Event", d.event)
		h.Set(prefix+"Delivery", id)
		key, sig = prefix+"Signature", strings.TrimPrefix(testkit.Sign(secret, d.body), "sha256=")
	case forgeGitLab:
		h.Set("X-Gitlab-Event", d.event)
		h.Set("X-Gitlab-Event-UUID", id)
		key, sig = "X-Gitlab-Token", secret
	case "gitlab-signed":
		h.Set("X-Gitlab-Event", d.event)
		h.Set("X-Gitlab-Event-UUID", id)
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		h.Set("webhook-id", id)
		h.Set("webhook-timestamp", ts)
		k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(signingSecret, "whsec_"))
		if err != nil {
			tb.Fatal(err)
		}
		if d.sign == "wrong" {
			k = []byte(secret)
		}
		mac := hmac.New(sha256.New, k)
		mac.Write([]byte(id + "." + ts + "."))
		mac.Write(d.body)
		key, sig = "webhook-signature", "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil))
	case forgeBitbucket:
		h.Set("X-Event-Key", d.event)
		h.Set("X-Request-UUID", id)
		key, sig = "X-Hub-Signature", testkit.Sign(secret, d.body)
	default:
		tb.Fatalf("no forge %s", d.forge)
	}
	switch d.sign {
	case "missing":
	case "empty":
		h[http.CanonicalHeaderKey(key)] = []string{""}
	default:
		h.Set(key, sig)
	}
	return r
}

// idHeader is the header of forge's delivery ids.
func idHeader(forge string) string {
	switch forge {
	case forgeGitea:
		return "X-Gitea-Delivery"
	case forgeForgejo:
		return "X-Forgejo-Delivery"
	case forgeBitbucket:
		return "X-Request-UUID"
	}
	return "X-Gitlab-Event-UUID"
}

// forgeCase is a delivery and the answer it must get.
type forgeCase struct {
	name     string
	d        forgeDelivery
	status   int
	result   string
	contains string
}

// forgeCases returns, for forge, deliveries that must deploy nothing: a
// wrong, missing or empty signature (401), and, verified, another branch,
// another repository, a deletion, a test delivery and an event not handled
// (2xx). live is the commit that is live.
func forgeCases(tb testing.TB, forge, live string) []forgeCase {
	const other = "0123456789abcdef0123456789abcdef01234567"
	pushEvent := map[string]string{forgeGitea: "push", forgeForgejo: "push", forgeGitLab: "Push Hook",
		"gitlab-signed": "Push Hook", forgeBitbucket: "repo:push"}[forge]
	push := forgePush(tb, forge, testRepo, testBranch, live, other)
	d := func(event string, body []byte) forgeDelivery {
		return forgeDelivery{forge: forge, event: event, body: body}
	}
	signed := func(sign string) forgeDelivery { c := d(pushEvent, push); c.sign = sign; return c }
	unsigned := "missing"
	cases := []forgeCase{
		{"wrong signature", signed("wrong"), 401, "error", "mismatch"},
		{"no signature", signed("missing"), 401, "error", unsigned},
		{"empty signature", signed("empty"), 401, "error", unsigned},
		{"another branch", d(pushEvent, forgePush(tb, forge, testRepo, "dev", live, other)), 200, "skipped", `branch "dev"`},
		{"another repository", d(pushEvent, forgePush(tb, forge, "someone/else", testBranch, live, other)), 200, "skipped", `"someone/else"`},
	}
	zeros := strings.Repeat("0", 40)
	switch fixtureDir(forge) {
	case forgeGitea:
		cases = append(cases,
			forgeCase{"deletion", d("delete", forgeFixture(tb, forgeGitea, "delete-branch.json", func(p map[string]any) {
				p["ref"] = testBranch
				obj(p, "repository")["full_name"] = testRepo
			})), 200, "skipped", "was deleted"},
			forgeCase{"test delivery", d("push", forgePush(tb, forge, testRepo, testBranch, zeros, zeros)), 200, "pong", ""},
			forgeCase{"event not handled", d("issues", push), 200, "skipped", `event "issues" not handled`},
		)
	case forgeGitLab:
		cases = append(cases,
			forgeCase{"deletion", d("Push Hook", forgePush(tb, forge, testRepo, testBranch, live, zeros)), 200, "skipped", "was deleted"},
			forgeCase{"tag", d("Tag Push Hook", forgeFixture(tb, forgeGitLab, "tag_push.json", func(p map[string]any) {
				obj(p, "project")["path_with_namespace"] = testRepo
			})), 200, "skipped", "tag"},
			forgeCase{"event not handled", d("Note Hook", push), 200, "skipped", `event "Note Hook" not handled`},
		)
	case forgeBitbucket:
		cases = append(cases,
			forgeCase{"deletion", d("repo:push", forgeFixture(tb, forgeBitbucket, "push-branch-delete.json", func(p map[string]any) {
				obj(p, "repository")["full_name"] = testRepo
				obj(p["push"].(map[string]any)["changes"].([]any)[0].(map[string]any), "old")["name"] = testBranch
			})), 200, "skipped", "was deleted"},
			forgeCase{"test delivery", d("diagnostics:ping", []byte(`{"test":true}`)), 200, "pong", ""},
			forgeCase{"event not handled", d("pullrequest:created", push), 200, "skipped", `event "pullrequest:created" not handled`},
		)
	}
	return cases
}

// check reports how an answer differs from what c expects.
func (c forgeCase) check(t testing.TB, status int, header http.Header, body []byte) {
	t.Helper()
	if status != c.status {
		t.Errorf("status %d, want %d; body %s", status, c.status, body)
	}
	if got := header.Get(idHeader(c.d.forge)); got != forgeDeliveryID {
		t.Errorf("%s %q, want %q", idHeader(c.d.forge), got, forgeDeliveryID)
	}
	var a map[string]string
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("answer %q is not a JSON object of strings: %v", body, err)
	}
	if a["result"] != c.result || a["delivery"] != forgeDeliveryID || !strings.Contains(a["error"]+a["reason"], c.contains) {
		t.Errorf("answer %s, want %s with %q and the delivery's id", body, c.result, c.contains)
	}
}

// send sends the delivery of c to the tests' Caddy and checks the answer.
func (c forgeCase) send(t *testing.T) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(c.d.request(t, hookURL))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	c.check(t, resp.StatusCode, resp.Header, body)
}

// TestForgesThroughCaddy: for each forge, a real Caddy deploying a real
// git repository: a wrong, missing or empty signature gets 401, another
// branch, another repository, a deletion, a test delivery and an event not
// handled get 2xx, and none of them deploys anything; then the forge's
// signed push of a new commit (its real payload, adjusted to the test
// repository) is answered 202 and goes live.
func TestForgesThroughCaddy(t *testing.T) {
	for _, forge := range []string{forgeGitea, forgeForgejo, forgeGitLab, "gitlab-signed", forgeBitbucket} {
		t.Run(forge, func(t *testing.T) {
			s := newTestSite(t)
			setting := "forge " + fixtureDir(forge) + " http://127.0.0.1:3000"
			if forge == forgeForgejo {
				setting = "forge forgejo"
			}
			if forge == "gitlab-signed" {
				t.Setenv("CWH_TEST_OLD_SECRET", signingSecret)
			}
			first := s.startLive(s.caddyfile(setting))
			startup := s.waitLook(0, deployer.ReasonStartup, deployer.OutcomeDeployed)

			for _, c := range forgeCases(t, forge, first) {
				t.Run(c.name, func(t *testing.T) {
					c.send(t)
				})
			}
			// None of those woke the deployer: the manual wake is the next
			// look (see TestDeliveriesThroughCaddy).
			if code, body := adminDo(t, http.MethodPost, "/github_webhook/deploy", `{"path": "`+s.path+`"}`, nil); code != http.StatusAccepted {
				t.Fatalf("POST deploy: %d %s", code, body)
			}
			manual := s.waitLook(startup.Count, deployer.ReasonManual, deployer.OutcomeLive)

			pushEvent := map[string]string{forgeGitea: "push", forgeForgejo: "push", forgeGitLab: "Push Hook",
				"gitlab-signed": "Push Hook", forgeBitbucket: "repo:push"}[forge]
			if fixtureDir(forge) == forgeGitLab {
				// GitLab's "Test" button sends a push of the branch's tip:
				// it is looked at, and nothing is deployed.
				test := forgeCase{"test delivery", forgeDelivery{forge: forge, event: pushEvent,
					body: forgePush(t, forge, testRepo, testBranch, first, first)}, 202, "queued", ""}
				test.send(t)
				manual = s.waitLook(manual.Count, deployer.ReasonDelivery, deployer.OutcomeLive)
			}

			second := s.repo.Commit("second version", map[string]string{"index.html": "second"})
			push := forgeCase{"push", forgeDelivery{forge: forge, event: pushEvent,
				body: forgePush(t, forge, testRepo, testBranch, first, second)}, 202, "queued", ""}
			push.send(t)
			s.waitLive(second)
			if got := get(t, siteURL+"/index.html"); got != "second" {
				t.Errorf("site serves %q, want second", got)
			}
		})
	}
}

// fuzzForges are the forges FuzzServeHTTP sends as, by (mode>>3) modulo
// their number: 0, github, is the request table's.
var fuzzForges = []string{forgeGitHub, forgeGitea, forgeForgejo, forgeGitLab, "gitlab-signed", forgeBitbucket}

// fuzzForgeID is the webhook-id of FuzzServeHTTP's signed GitLab deliveries.
const fuzzForgeID = "fuzz-delivery"

// addForgeSeeds adds to f's corpus the deliveries of forgeCases for every
// forge but GitHub, and their pushes of the deployed branch.
func addForgeSeeds(f *testing.F) {
	const live = "1111111111111111111111111111111111111111"
	for i, forge := range fuzzForges {
		if forge == forgeGitHub {
			continue
		}
		mode := uint8(i << 3)
		push := forgeCase{d: forgeDelivery{forge: forge, body: forgePush(f, forge, testRepo, testBranch, live, strings.Repeat("2", 40))}}
		push.d.event = map[string]string{forgeGitea: "push", forgeForgejo: "push", forgeGitLab: "Push Hook",
			"gitlab-signed": "Push Hook", forgeBitbucket: "repo:push"}[forge]
		for _, c := range append(forgeCases(f, forge, live), push) {
			m := mode | fuzzSignedWithSecret
			switch c.d.sign {
			case "wrong":
				m = mode | fuzzSignedWrongSecret
			case "missing", "empty":
				m = mode | fuzzSignatureAsIs
			}
			f.Add("POST", "application/json", c.d.event, "", forgeDeliveryID, m, c.d.body)
		}
		f.Add("POST", "application/json", push.d.event, "", forgeDeliveryID, mode|fuzzSignedWithOld|4, push.d.body)
		if fixtureDir(forge) == forgeGitea {
			f.Add("POST", "application/x-www-form-urlencoded", "push", "", "", mode|fuzzSignedWithSecret,
				[]byte("payload="+url.QueryEscape(string(push.d.body))))
		}
	}
}

// fuzzSignature returns the signature forge puts on a delivery of body,
// with secret: for Gitea, over a form's payload field; for GitLab's plain
// token, the secret itself; for its signing token, the signing key's MAC
// at ts when secret is testSecret, or else a MAC with secret as the key.
func fuzzSignature(forge, secret, contentType string, body []byte, ts string) string {
	switch forge {
	case forgeGitea, forgeForgejo:
		signed := body
		if mt, _, _ := strings.Cut(contentType, ";"); strings.EqualFold(strings.TrimSpace(mt), "application/x-www-form-urlencoded") {
			form, _ := url.ParseQuery(string(body))
			if v, ok := form["payload"]; ok {
				signed = []byte(v[0])
			}
		}
		return strings.TrimPrefix(testkit.Sign(secret, signed), "sha256=")
	case forgeGitLab:
		return secret
	case "gitlab-signed":
		key := []byte(secret)
		if secret == testSecret {
			key, _ = base64.StdEncoding.DecodeString(strings.TrimPrefix(signingSecret, "whsec_"))
		}
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(fuzzForgeID + "." + ts + "."))
		mac.Write(body)
		return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	}
	return testkit.Sign(secret, body) // Bitbucket
}

// fuzzForgeDelivery is FuzzServeHTTP for a forge other than GitHub: the
// same guarantees, with the forge's headers, signatures and payloads.
func fuzzForgeDelivery(t *testing.T, forge, method, contentType, event, signature, id string, mode uint8, body []byte) {
	h, wakes := newTestHandler(testBranch, zap.NewNop())
	fg, err := newForge(fixtureDir(forge), [][]byte{[]byte(testOldSecret), []byte(testSecret), []byte(signingSecret)})
	if err != nil {
		t.Fatal(err)
	}
	h.setForge(fg)
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	switch mode % 4 {
	case fuzzSignedWithSecret:
		signature = fuzzSignature(forge, testSecret, contentType, body, ts)
	case fuzzSignedWithOld:
		signature = fuzzSignature(forge, testOldSecret, contentType, body, ts)
	case fuzzSignedWrongSecret:
		signature = fuzzSignature(forge, "not "+testSecret, contentType, body, ts)
	}
	r := httptest.NewRequest(http.MethodPost, "/_hook", bytes.NewReader(body))
	r.Method = method
	if mode&4 != 0 {
		r.ContentLength = -1
	}
	hd := r.Header
	hd.Set("Content-Type", contentType)
	switch forge {
	case forgeGitea, forgeForgejo:
		prefix := map[string]string{forgeGitea: "X-Gitea-", forgeForgejo: "X-Forgejo-"}[forge]
		hd.Set(prefix+"Event", event)
		hd.Set(prefix+"Delivery", id)
		hd.Set(prefix+"Signature", signature)
	case forgeGitLab, "gitlab-signed":
		hd.Set("X-Gitlab-Event", event)
		hd.Set("X-Gitlab-Event-UUID", id)
		if forge == forgeGitLab {
			hd.Set("X-Gitlab-Token", signature)
		} else {
			hd.Set("webhook-id", fuzzForgeID)
			hd.Set("webhook-timestamp", ts)
			hd.Set("webhook-signature", signature)
		}
	case forgeBitbucket:
		hd.Set("X-Event-Key", event)
		hd.Set("X-Request-UUID", id)
		hd.Set("X-Hub-Signature", signature)
	}
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, r, nil); err != nil {
		t.Fatalf("ServeHTTP: %v", err)
	}
	if !slices.Contains([]int{200, 202, 400, 401, 405, 413, 415}, w.Code) {
		t.Errorf("status %d", w.Code)
	}
	if !json.Valid(w.Body.Bytes()) {
		t.Errorf("answer is not JSON: %q", w.Body)
	}
	if wakes.Load() > 1 {
		t.Errorf("%d wakes for one delivery", wakes.Load())
	}
	valid := false
	for _, secret := range []string{testSecret, testOldSecret} {
		if forge == "gitlab-signed" && secret == testOldSecret {
			continue // its one signing key is signingSecret's
		}
		good := fuzzSignature(forge, secret, contentType, body, ts)
		valid = valid || signature != "" && (signature == good || fixtureDir(forge) == forgeGitea && strings.EqualFold(signature, good))
	}
	if !valid {
		if wakes.Load() != 0 {
			t.Fatalf("woken by a %s delivery without a valid signature: %q", forge, signature)
		}
		if w.Code < 400 {
			t.Errorf("status %d for a %s delivery without a valid signature", w.Code, forge)
		}
		return
	}
	want, exact := shouldWakeForge(forge, method, contentType, event, body)
	if exact && want != (wakes.Load() == 1) {
		t.Fatalf("%s: %d wakes, want %v: %d %s", forge, wakes.Load(), want, w.Code, w.Body)
	}
}

// shouldWakeForge reports whether a validly signed delivery of forge must
// wake the deployer, as encoding/json reads its payload; exact is false
// where the delivery package may read it otherwise and still be right (a
// form that url.ParseQuery finds fault with, values at the lengths kept,
// Bitbucket changes of irregular shape).
func shouldWakeForge(forge, method, contentType, event string, body []byte) (wake, exact bool) {
	if method != http.MethodPost || len(body) > testMaxBody {
		return false, true
	}
	mediaType, _, _ := strings.Cut(contentType, ";")
	mediaType = strings.TrimSpace(mediaType)
	data := body
	switch {
	case strings.EqualFold(mediaType, "application/json"):
	case strings.EqualFold(mediaType, "application/x-www-form-urlencoded") && fixtureDir(forge) == forgeGitea:
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return false, false
		}
		if !form.Has("payload") {
			return false, true
		}
		data = []byte(form.Get("payload"))
	default:
		return false, true
	}
	var p map[string]any
	if json.Unmarshal(data, &p) != nil {
		return false, true
	}
	exact = true
	str := func(m map[string]any, path ...string) string {
		for i, k := range path {
			if i == len(path)-1 {
				s, _ := m[k].(string)
				if len(s) > 64 || strings.ContainsRune(s, utf8.RuneError) {
					exact = false // near the limits the package keeps
				}
				return s
			}
			next, ok := m[k].(map[string]any)
			if !ok {
				if m[k] != nil {
					exact = false // the wrong kind: 400
				}
				return ""
			}
			m = next
		}
		return ""
	}
	isZero := func(s string) bool { return s != "" && strings.Trim(s, "0") == "" }
	ref := "refs/heads/" + testBranch
	switch fixtureDir(forge) {
	case forgeGitea:
		after, before := str(p, "after"), str(p, "before")
		return event == "push" && strings.EqualFold(str(p, "repository", "full_name"), testRepo) &&
			str(p, "ref") == ref && after != before && !isZero(after), exact
	case forgeGitLab:
		return (event == "Push Hook" || event == "Tag Push Hook") && strings.EqualFold(str(p, "project", "path_with_namespace"), testRepo) &&
			str(p, "ref") == ref && !isZero(str(p, "after")), exact
	case forgeBitbucket:
		if event != "repo:push" || !strings.EqualFold(str(p, "repository", "full_name"), testRepo) {
			return false, exact
		}
		push, _ := p["push"].(map[string]any)
		changes, _ := push["changes"].([]any)
		if len(changes) > 8 {
			exact = false
		}
		for _, c := range changes {
			c, ok := c.(map[string]any)
			if !ok {
				exact = false
				continue
			}
			n, ok := c["new"].(map[string]any)
			if !ok {
				if c["new"] != nil {
					exact = false
				}
				continue
			}
			name, ok1 := n["name"].(string)
			typ, ok2 := n["type"].(string)
			if !ok1 || !ok2 {
				exact = false
				continue
			}
			if name == testBranch && typ == "branch" {
				return true, exact
			}
		}
		return false, exact
	}
	return false, false
}
