package notify

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines leaked:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// testSecret is a whsec_ secret as a receiver would generate it.
var testSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("a notification signing key 32 b!"))

// received is one request a receiver got.
type received struct {
	header http.Header
	body   []byte
}

// receiver is a local HTTP server that records what it is sent and answers
// with the statuses of answers, in turn (200 once they run out).
type receiver struct {
	*httptest.Server
	mu      sync.Mutex
	got     []received
	answers []int
	arrived chan struct{}
}

func newReceiver(t *testing.T, answers ...int) *receiver {
	r := &receiver{answers: answers, arrived: make(chan struct{}, 100)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
		r.mu.Lock()
		r.got = append(r.got, received{req.Header.Clone(), body})
		status := http.StatusOK
		if len(r.answers) > 0 {
			status, r.answers = r.answers[0], r.answers[1:]
		}
		r.mu.Unlock()
		w.WriteHeader(status)
		r.arrived <- struct{}{}
	}))
	t.Cleanup(r.Close)
	return r
}

// wait waits for n requests and returns all received so far.
func (r *receiver) wait(t *testing.T, n int) []received {
	t.Helper()
	for range n {
		select {
		case <-r.arrived:
		case <-time.After(30 * time.Second):
			t.Fatalf("waited 30 s for request %d of %d", len(r.all())+1, n)
		}
	}
	return r.all()
}

func (r *receiver) all() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

// results collects what a Notifier reports.
type results struct {
	mu  sync.Mutex
	all []Result
}

func (r *results) add(res Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, res)
}

func (r *results) outcomes() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, res := range r.all {
		out = append(out, res.Outcome)
	}
	return out
}

func newNotifier(t *testing.T, dests []Destination, opts ...Option) *Notifier {
	t.Helper()
	opts = append([]Option{WithBackoff(func(int) time.Duration { return 10 * time.Millisecond })}, opts...)
	n, err := New(dests, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := n.Close(ctx); err != nil {
			t.Errorf("closing: %v", err)
		}
	})
	return n
}

var failure = Message{
	Kind: Failure, Path: "/srv/blog", Repo: "octocat/blog", Branch: "main",
	Commit: "1a2b3c4d5e6f7a8b9c0d1a2b3c4d5e6f7a8b9c0d", Release: "20261205T093000Z-1a2b3c4d5e6f",
	Reason: "delivery", Error: "build failed: hugo exited 1", Duration: 1500 * time.Millisecond,
	At: time.Date(2026, 12, 5, 9, 30, 0, 0, time.UTC), CommitURL: "https://github.com/octocat/blog/commit/1a2b3c4d5e6f7a8b9c0d1a2b3c4d5e6f7a8b9c0d",
}

// TestJSONSignedAsStandardWebhooks: the json format is verified by the
// Standard Webhooks library with the secret, holds the deploy's facts, and
// a tampered body, id or timestamp is refused.
func TestJSONSignedAsStandardWebhooks(t *testing.T) {
	r := newReceiver(t)
	n := newNotifier(t, []Destination{{URL: r.URL + "/hook", Format: FormatJSON, Secret: testSecret}})
	n.Send(failure)
	got := r.wait(t, 1)[0]

	wh, err := standardwebhooks.NewWebhook(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(got.body, got.header); err != nil {
		t.Fatalf("the library refuses the signature: %v\nheaders %v", err, got.header)
	}
	var p struct {
		Type string         `json:"type"`
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal(got.body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Type != "deploy.failure" {
		t.Errorf("type %q, want deploy.failure", p.Type)
	}
	for k, want := range map[string]any{
		"path": "/srv/blog", "repo": "octocat/blog", "commit": failure.Commit, "result": "error",
		"error": failure.Error, "kind": "failure", "branch": "main", "release": failure.Release,
	} {
		if p.Data[k] != want {
			t.Errorf("data.%s = %v, want %v", k, p.Data[k], want)
		}
	}

	tampered := []struct {
		name   string
		body   []byte
		header func(h http.Header)
	}{
		{"body", []byte(strings.Replace(string(got.body), "failure", "success", 1)), func(http.Header) {}},
		{"id", got.body, func(h http.Header) { h.Set("webhook-id", "msg_other") }},
		{"timestamp", got.body, func(h http.Header) { h.Set("webhook-timestamp", "1700000000") }},
		{"no signature", got.body, func(h http.Header) { h.Del("webhook-signature") }},
	}
	for _, tc := range tampered {
		t.Run(tc.name, func(t *testing.T) {
			h := got.header.Clone()
			tc.header(h)
			if err := wh.VerifyIgnoringTimestamp(tc.body, h); err == nil {
				t.Error("a tampered message verifies")
			}
		})
	}
}

// TestFormats: Slack gets {"text"}, Discord {"content"} and ntfy a plain
// message with Title and Priority, each naming the repository, the commit
// and the error.
func TestFormats(t *testing.T) {
	for _, tc := range []struct {
		format Format
		check  func(t *testing.T, got received)
	}{
		{FormatSlack, func(t *testing.T, got received) {
			var b map[string]string
			if err := json.Unmarshal(got.body, &b); err != nil || len(b) != 1 {
				t.Fatalf("slack body %s: %v", got.body, err)
			}
			mustContain(t, b["text"], "octocat/blog: deploy failed", "<"+failure.CommitURL+"|1a2b3c4d5e6f>", "hugo exited 1")
		}},
		{FormatDiscord, func(t *testing.T, got received) {
			var b struct {
				Content string `json:"content"`
				Allowed struct {
					Parse []string `json:"parse"`
				} `json:"allowed_mentions"`
			}
			if err := json.Unmarshal(got.body, &b); err != nil {
				t.Fatalf("discord body %s: %v", got.body, err)
			}
			mustContain(t, b.Content, "octocat/blog: deploy failed", "[1a2b3c4d5e6f](<"+failure.CommitURL+">)", "hugo exited 1")
			if b.Allowed.Parse == nil || len(b.Allowed.Parse) != 0 {
				t.Errorf("allowed_mentions.parse %v: a message may ping people", b.Allowed.Parse)
			}
		}},
		{FormatNtfy, func(t *testing.T, got received) {
			if ct := got.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type %q", ct)
			}
			if got.header.Get("Title") != "octocat/blog: deploy failed" || got.header.Get("Priority") != "high" {
				t.Errorf("Title %q, Priority %q", got.header.Get("Title"), got.header.Get("Priority"))
			}
			if got.header.Get("Click") != failure.CommitURL {
				t.Errorf("Click %q", got.header.Get("Click"))
			}
			mustContain(t, string(got.body), "1a2b3c4d5e6f", "hugo exited 1", "/srv/blog")
		}},
	} {
		t.Run(string(tc.format), func(t *testing.T) {
			r := newReceiver(t)
			n := newNotifier(t, []Destination{{URL: r.URL, Format: tc.format}})
			n.Send(failure)
			got := r.wait(t, 1)[0]
			if got.header.Get("webhook-signature") != "" {
				t.Error("a format other than json is signed")
			}
			tc.check(t, got)
		})
	}
}

func mustContain(t *testing.T, s string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(s, w) {
			t.Errorf("%q does not hold %q", s, w)
		}
	}
}

// TestRetriedKeepingItsID: a message answered 500 twice, then 200, is sent
// three times with the same webhook-id, each attempt signed anew; each
// attempt is reported.
func TestRetriedKeepingItsID(t *testing.T) {
	r := newReceiver(t, 500, 503)
	var res results
	n := newNotifier(t, []Destination{{URL: r.URL, Format: FormatJSON, Secret: testSecret}}, WithResult(res.add))
	n.Send(failure)
	got := r.wait(t, 3)
	wh, _ := standardwebhooks.NewWebhook(testSecret)
	for i, g := range got {
		if id := g.header.Get("webhook-id"); id != got[0].header.Get("webhook-id") || !strings.HasPrefix(id, "msg_") {
			t.Errorf("attempt %d has webhook-id %q, the first %q", i+1, id, got[0].header.Get("webhook-id"))
		}
		if err := wh.Verify(g.body, g.header); err != nil {
			t.Errorf("attempt %d: %v", i+1, err)
		}
	}
	waitFor(t, func() bool { return len(res.outcomes()) == 3 })
	if o := strings.Join(res.outcomes(), " "); o != "retry retry ok" {
		t.Errorf("outcomes %q, want retry retry ok", o)
	}
}

// TestGivesUp: a 400 is final (no retry), and a destination that keeps
// failing is given up after the attempts allowed.
func TestGivesUp(t *testing.T) {
	t.Run("400", func(t *testing.T) {
		r := newReceiver(t, 400, 400)
		var res results
		n := newNotifier(t, []Destination{{URL: r.URL}}, WithResult(res.add))
		n.Send(failure)
		n.Send(failure)
		r.wait(t, 2)
		waitFor(t, func() bool { return len(res.outcomes()) == 2 })
		if o := strings.Join(res.outcomes(), " "); o != "error error" {
			t.Errorf("outcomes %q, want error error", o)
		}
	})
	t.Run("attempts", func(t *testing.T) {
		r := newReceiver(t, 500, 500, 500, 500)
		var res results
		n := newNotifier(t, []Destination{{URL: r.URL}}, WithResult(res.add), WithAttempts(3))
		n.Send(failure)
		r.wait(t, 3)
		waitFor(t, func() bool { return len(res.outcomes()) == 3 })
		if o := strings.Join(res.outcomes(), " "); o != "retry retry error" {
			t.Errorf("outcomes %q, want retry retry error", o)
		}
	})
}

// TestKinds: by default a destination gets failures and recoveries, not
// successes; on names what it gets.
func TestKinds(t *testing.T) {
	r := newReceiver(t)
	only := newReceiver(t)
	n := newNotifier(t, []Destination{{URL: r.URL}, {URL: only.URL, On: []Kind{Success}}})
	for _, k := range []Kind{Success, Failure, Recovered, Success} {
		m := failure
		m.Kind = k
		n.Send(m)
	}
	got := r.wait(t, 2)
	var kinds []string
	for _, g := range got {
		var p payload
		json.Unmarshal(g.body, &p)
		kinds = append(kinds, string(p.Data.Kind))
	}
	if k := strings.Join(kinds, " "); k != "failure recovered" {
		t.Errorf("default destination got %q, want failure recovered", k)
	}
	if got := only.wait(t, 2); len(got) != 2 {
		t.Errorf("on success: %d messages, want 2", len(got))
	}
}

// TestHangingReceiver: Send never waits on a destination that does not
// answer, its queue is bounded (the oldest dropped, and counted), and Close
// gives up at its context's end, leaving no goroutine behind.
func TestHangingReceiver(t *testing.T) {
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hang.Close()
	defer close(release)
	var res results
	n, err := New([]Destination{{URL: hang.URL}}, WithQueue(4), WithResult(res.add), WithTimeout(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	sent := make(chan struct{})
	go func() {
		for range 100 {
			n.Send(failure)
		}
		close(sent)
	}()
	select {
	case <-sent:
	case <-time.After(30 * time.Second):
		t.Fatal("Send blocked on a receiver that hangs")
	}
	waitFor(t, func() bool { return count(res.outcomes(), OutcomeDropped) >= 95 })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := n.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close: %v, want the deadline", err)
	}
	// 100 sent: one in flight, 4 queued, 95 dropped as the queue filled;
	// Close dropped the rest, and Send after Close does nothing.
	n.Send(failure)
	if d := count(res.outcomes(), OutcomeDropped); d != 100 {
		t.Errorf("%d dropped, want 100 (outcomes %v)", d, res.outcomes())
	}
}

func count(list []string, s string) int {
	c := 0
	for _, v := range list {
		if v == s {
			c++
		}
	}
	return c
}

// TestNothingSecretInResults: an error never names the URL, whose path is
// a Slack or Discord webhook's credential.
func TestNothingSecretInResults(t *testing.T) {
	r := newReceiver(t)
	r.Close() // nothing listens there now
	var res results
	const credential = "T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX"
	n := newNotifier(t, []Destination{{URL: r.URL + "/services/" + credential, Format: FormatSlack}},
		WithResult(res.add), WithAttempts(2))
	n.Send(failure)
	waitFor(t, func() bool { return len(res.outcomes()) == 2 })
	res.mu.Lock()
	defer res.mu.Unlock()
	for _, x := range res.all {
		if x.Err == nil || strings.Contains(x.Err.Error(), credential) || strings.Contains(x.Destination, "services") {
			t.Errorf("result names the credential or no error: %+v", x)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		d    Destination
		want string // "" for valid
	}{
		{Destination{URL: "https://hooks.slack.com/services/x"}, ""},
		{Destination{URL: "https://example.com/hook", Secret: testSecret}, ""},
		{Destination{URL: "ftp://example.com"}, "not an http"},
		{Destination{URL: "https://example.com", Format: "xml"}, "format"},
		{Destination{URL: "https://hooks.slack.com/services/x", Secret: testSecret}, "json format only"},
		{Destination{URL: "https://example.com", Secret: "plain"}, "whsec_"},
		{Destination{URL: "https://example.com", Secret: "whsec_!!!"}, "base64"},
		{Destination{URL: "https://example.com", On: []Kind{"always"}}, "on"},
	} {
		err := tc.d.Validate()
		if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.d, err, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), "example.com") || strings.Contains(err.Error(), "!!!")) {
			t.Errorf("error names the url or secret: %v", err)
		}
	}
}

func TestGuessFormat(t *testing.T) {
	for u, want := range map[string]Format{
		"https://hooks.slack.com/services/T/B/X":  FormatSlack,
		"https://discord.com/api/webhooks/1/x":    FormatDiscord,
		"https://discordapp.com/api/webhooks/1/x": FormatDiscord,
		"https://ntfy.sh/mytopic":                 FormatNtfy,
		"https://example.com/hook":                FormatJSON,
		"https://discord.com/other":               FormatJSON,
	} {
		if got := GuessFormat(u); got != want {
			t.Errorf("GuessFormat(%s) = %s, want %s", u, got, want)
		}
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for range 3000 {
		if ok() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("waited 30 s")
}

// BenchmarkSend is what a deploy pays to notify: queueing a message for a
// destination that never answers (its queue full, so each Send also drops
// the oldest), against one that answers at once.
func BenchmarkSend(b *testing.B) {
	for _, tc := range []struct {
		name string
		hang bool
	}{{"answering", false}, {"hanging", true}} {
		b.Run(tc.name, func(b *testing.B) {
			release := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.hang {
					select {
					case <-release:
					case <-r.Context().Done():
					}
				}
			}))
			defer srv.Close()
			defer close(release)
			n, err := New([]Destination{{URL: srv.URL}}, WithResult(func(Result) {}))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				n.Send(failure)
			}
			b.StopTimer()
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			n.Close(ctx)
			cancel()
		})
	}
}
