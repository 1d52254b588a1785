package caddywebhook

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-github/v74/github"
	"go.uber.org/zap"

	"github.com/caddy-webhooks/caddy-github-webhook/delivery"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// discardWriter is a ResponseWriter that keeps only the status, so that the
// benchmark measures the handler rather than a recorder.
type discardWriter struct {
	header http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.header }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }

// BenchmarkDelivery compares, on the same signed push for another branch
// (testdata/github/push-other-branch.json, 7.5 KiB), the handler answering
// it (read, verify, decode, decide, answer) with go-github's
// ValidatePayload plus ParseWebHook and the same decision; and the handler
// answering each other forge's real push for another branch (forge=...),
// verified as that forge signs it.
//
//	go test -run '^$' -bench Delivery -benchmem ./caddywebhook/
func BenchmarkDelivery(b *testing.B) {
	body := fixture(b, "push-other-branch.json")
	newRequest := func() (*http.Request, *bytes.Reader) {
		br := bytes.NewReader(body)
		r := httptest.NewRequest(http.MethodPost, "/_github", nil)
		r.Body = io.NopCloser(br)
		r.ContentLength = int64(len(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("X-GitHub-Event", "push")
		r.Header.Set("X-GitHub-Delivery", testDeliveryID)
		r.Header.Set("X-Hub-Signature-256", testkit.Sign(testSecret, body))
		return r, br
	}

	b.Run("handler", func(b *testing.B) {
		h, wakes := newTestHandler(testBranch, zap.NewNop())
		h.setForge(delivery.NewGitHub([][]byte{[]byte(testSecret)}))
		r, br := newRequest()
		w := &discardWriter{header: make(http.Header)}
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			br.Reset(body)
			clear(w.header)
			h.ServeHTTP(w, r, nil)
			if w.status != http.StatusOK {
				b.Fatalf("status %d", w.status)
			}
		}
		if wakes.Load() != 0 {
			b.Fatal("woken")
		}
	})

	// Each other forge's real push (testdata/<forge>/), for another branch,
	// as that forge signs and sends it (forge=...); and the same bytes sent
	// as GitHub sends a push, to GitHub's reader (github-reads=...): the two
	// differ only in the forge's code, not in the payload's shape.
	for _, forge := range fuzzForges[1:] {
		body := forgePush(b, forge, testRepo, "dev", strings.Repeat("1", 40), strings.Repeat("2", 40))
		event := map[string]string{forgeGitea: "push", forgeForgejo: "push", forgeGitLab: "Push Hook",
			"gitlab-signed": "Push Hook", forgeBitbucket: "repo:push"}[forge]
		secret := testSecret // one secret, as for GitHub: each is one more MAC
		if forge == "gitlab-signed" {
			secret = signingSecret
		}
		fg, err := newForge(fixtureDir(forge), [][]byte{[]byte(secret)})
		if err != nil {
			b.Fatal(err)
		}
		b.Run("forge="+forge, func(b *testing.B) {
			benchHandler(b, fg, forgeDelivery{forge: forge, event: event, body: body}.request(b, "/_github"), body)
		})
		b.Run("github-reads="+forge, func(b *testing.B) {
			r := httptest.NewRequest(http.MethodPost, "/_github", nil)
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("X-GitHub-Event", "push")
			r.Header.Set("X-GitHub-Delivery", testDeliveryID)
			r.Header.Set("X-Hub-Signature-256", testkit.Sign(testSecret, body))
			benchHandler(b, delivery.NewGitHub([][]byte{[]byte(testSecret)}), r, body)
		})
	}

	b.Run("go-github", func(b *testing.B) {
		secret := []byte(testSecret)
		r, br := newRequest()
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			br.Reset(body)
			payload, err := github.ValidatePayload(r, secret)
			if err != nil {
				b.Fatal(err)
			}
			event, err := github.ParseWebHook(github.WebHookType(r), payload)
			if err != nil {
				b.Fatal(err)
			}
			push, ok := event.(*github.PushEvent)
			if !ok || !strings.EqualFold(push.GetRepo().GetFullName(), testRepo) || push.GetRef() == "refs/heads/"+testBranch {
				b.Fatalf("decided wrongly on %T", event)
			}
		}
	})
}

// benchHandler times the handler reading forge's delivery r of body, for
// another branch: answered 200, waking nothing.
func benchHandler(b *testing.B, forge delivery.Forge, r *http.Request, body []byte) {
	h, wakes := newTestHandler(testBranch, zap.NewNop())
	h.setForge(forge)
	br := bytes.NewReader(body)
	r.Body = io.NopCloser(br)
	r.ContentLength = int64(len(body))
	w := &discardWriter{header: make(http.Header)}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		br.Reset(body)
		clear(w.header)
		h.ServeHTTP(w, r, nil)
		if w.status != http.StatusOK {
			b.Fatalf("status %d", w.status)
		}
	}
	if wakes.Load() != 0 {
		b.Fatal("woken")
	}
}
