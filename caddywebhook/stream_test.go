package caddywebhook

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	rtmetrics "runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// forgedSignature is well-formed but matches no body.
var forgedSignature = "sha256=" + strings.Repeat("0", 64)

// heapBytes returns the bytes of live heap objects, after a collection.
func heapBytes() int64 {
	runtime.GC()
	s := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	rtmetrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// stalledDelivery starts serving, with h, a forged delivery declaring size
// bytes, writes all of them but the last, and returns once h has read them
// (an io.Pipe write returns only then). The answer's status goes to done
// once end is called.
func stalledDelivery(t *testing.T, h *Handler, size int64, body []byte) (end func(), done <-chan int) {
	t.Helper()
	pr, pw := io.Pipe()
	r := httptest.NewRequest(http.MethodPost, "/_github", pr)
	r.ContentLength = size
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-GitHub-Event", "push")
	r.Header.Set("X-Hub-Signature-256", forgedSignature)
	ch := make(chan int, 1)
	go func() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r, nil)
		ch <- w.Code
	}()
	if _, err := pw.Write(body[:size-1]); err != nil {
		t.Fatalf("sending the body: %v", err)
	}
	return func() { pw.CloseWithError(io.ErrUnexpectedEOF) }, ch
}

// TestStalledBodiesHoldBoundedMemory: 100 forged deliveries of 1 MiB, each
// stalled one byte before its end, hold a few KiB each, not their size.
// On main before streaming, each held its whole body (bodies up to 1 MiB
// were read into memory outside any budget): this test saw over 100 MiB.
func TestStalledBodiesHoldBoundedMemory(t *testing.T) {
	const clients, size = 100, 1 << 20
	h, wakes := newTestHandler(testBranch, zap.NewNop())
	h.maxBody = 2 << 20
	body := bytes.Repeat([]byte(`{"zen":"forged"}`), size/16)

	before := heapBytes()
	var ends []func()
	var dones []<-chan int
	for range clients {
		end, done := stalledDelivery(t, h, size, body)
		ends, dones = append(ends, end), append(dones, done)
	}
	held := heapBytes() - before
	for _, end := range ends {
		end()
	}
	for _, done := range dones {
		if code := <-done; code != http.StatusBadRequest {
			t.Errorf("a body cut short answered %d, want 400", code)
		}
	}
	t.Logf("%d stalled bodies of %d bytes held %d KiB of heap", clients, size, held>>10)
	if limit := int64(16 << 20); held > limit {
		t.Errorf("%d stalled bodies of %d bytes held %d MiB of heap, want under %d MiB", clients, size, held>>20, limit>>20)
	}
	if wakes.Load() != 0 {
		t.Error("a forged delivery woke the deployer")
	}
}

// TestNoFreeSlot: when every slot holds a body being read, from the same
// client address, a delivery from that address waits for one (the budget's
// wait, here 2 s) and is then answered 503, closing the connection; a
// delivery that waits gets the slot a body gives back; and once they are
// gone a delivery is read at once. On main the delivery was answered 503 at
// once, without waiting for a slot.
func TestNoFreeSlot(t *testing.T) {
	h, wakes := newTestHandler(testBranch, zap.NewNop())
	h.bodies = newBodyBudget(2, 2*time.Second)
	body := bytes.Repeat([]byte(" "), 1000)
	var ends []func()
	var dones []<-chan int
	for range 2 {
		end, done := stalledDelivery(t, h, 1000, body)
		ends, dones = append(ends, end), append(dones, done)
	}
	if n := h.bodies.inUse(); n != 2 {
		t.Fatalf("%d slots taken by 2 stalled bodies", n)
	}

	push := deliveryCase{event: "push", body: fixture(t, "push-branch.json"), signWith: testSecret}
	w := httptest.NewRecorder()
	start := time.Now()
	h.ServeHTTP(w, push.request(t, "/_github"), nil)
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "too many deliveries at once") {
		t.Errorf("with no slot free: %d %s, want 503 too many deliveries at once", w.Code, w.Body)
	}
	if took := time.Since(start); took < time.Second || took > 10*time.Second {
		t.Errorf("with no slot free, answered after %v, want after the wait of 1 to 2 s", took)
	}
	if w.Header().Get("Connection") != "close" {
		t.Errorf("an answer before the body was read does not close the connection: %v", w.Header())
	}

	// A delivery waiting when a body stops gets its slot.
	waiting := make(chan int)
	go func() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, push.request(t, "/_github"), nil)
		waiting <- w.Code
	}()
	time.Sleep(100 * time.Millisecond)
	ends[0]()
	<-dones[0]
	if code := <-waiting; code != http.StatusAccepted {
		t.Errorf("a delivery waiting for a slot got %d, want 202 once a body gave its slot back", code)
	}

	ends[1]()
	<-dones[1]
	if n := h.bodies.inUse(); n != 0 {
		t.Fatalf("%d slots still taken", n)
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, push.request(t, "/_github"), nil)
	if w.Code != http.StatusAccepted || wakes.Load() != 2 {
		t.Errorf("once slots are free: %d %s, %d wakes; want 202 and a second wake", w.Code, w.Body, wakes.Load())
	}
}

// TestOwnReadDeadline: the handler bounds reading a body itself only when
// the server has no read_body timeout of its own.
func TestOwnReadDeadline(t *testing.T) {
	for _, c := range []struct {
		name   string
		server *caddyhttp.Server
		want   bool
	}{
		{"outside Caddy", nil, true},
		{"no read_body", &caddyhttp.Server{}, true},
		{"read_body 30s", &caddyhttp.Server{ReadTimeout: caddy.Duration(30 * time.Second)}, false},
		{"read_body 2m", &caddyhttp.Server{ReadTimeout: caddy.Duration(2 * time.Minute)}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", nil)
			if c.server != nil {
				r = r.WithContext(context.WithValue(r.Context(), caddyhttp.ServerCtxKey, c.server))
			}
			if got := ownReadDeadline(r); got != c.want {
				t.Errorf("ownReadDeadline = %v, want %v", got, c.want)
			}
		})
	}
}

// waitSlots waits until the number of body slots taken satisfies ok.
func waitSlots(t *testing.T, what string, ok func(taken int) bool) {
	t.Helper()
	testkit.WaitFor(t, time.Minute, what, func() error {
		if n := bodies.inUse(); !ok(n) {
			return fmt.Errorf("%d slots taken", n)
		}
		return nil
	})
}

// rawDelivery sends head (a request line and headers, without the blank
// line) and then body on a new connection to addr, leaves the connection
// open, and returns it with the answer. Waiting for the answer gives up
// after a minute: Caddy's own idle timeout for a body is one minute.
func rawDelivery(t *testing.T, addr, head string, body []byte) (net.Conn, *http.Response, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.Write(append([]byte(head+"\r\n\r\n"), body...)); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(time.Minute))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer while the body is not sent: %v", err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	return conn, resp, answer
}

// deliveryHead returns the head of a push delivery to Caddy's handler with
// more headers.
func deliveryHead(more ...string) string {
	return strings.Join(append([]string{
		"POST /_github HTTP/1.1",
		"Host: " + siteAddr(),
		"Content-Type: application/json",
		"X-GitHub-Event: push",
		"X-GitHub-Delivery: " + testDeliveryID,
	}, more...), "\r\n")
}

// TestUnsignedAnsweredBeforeBody: a delivery without a well-formed
// X-Hub-Signature-256 header is answered 401 by Caddy while its client has
// sent the headers only, declaring a body it never sends. On main before
// streaming, the handler read the body first: no answer came until Caddy
// gave up on the body a minute later (and then 400, not 401).
func TestUnsignedAnsweredBeforeBody(t *testing.T) {
	s := newTestSite(t)
	s.startLive(s.caddyfile(""))

	for _, c := range []struct {
		name, header, says string
	}{
		{"no signature", "X-Other: 1", "missing X-Hub-Signature-256 header"},
		{"SHA-1 signature only", "X-Hub-Signature: sha1=0000000000000000000000000000000000000000", "missing X-Hub-Signature-256 header"},
		{"not hex", "X-Hub-Signature-256: sha256=" + strings.Repeat("z", 64), "signature mismatch"},
		{"too short", "X-Hub-Signature-256: sha256=abcd", "signature mismatch"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, resp, body := rawDelivery(t, siteAddr(), deliveryHead("Content-Length: 60000", c.header), nil)
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), c.says) {
				t.Errorf("answer %d %s, want 401 saying %q", resp.StatusCode, body, c.says)
			}
			if !resp.Close {
				t.Errorf("the answer does not close the connection: %v", resp.Header)
			}
		})
	}
}

// TestIdleChunkedDoNotDelayDelivery: three chunked deliveries that send one
// small chunk and stall hold three slots, and a genuine signed push of 2 MB
// sent meanwhile is answered 202 and deploys. On main before streaming, each
// idle chunked body reserved max_body (25 MiB) of a 64 MiB budget, and the
// genuine delivery waited behind them until they timed out.
func TestIdleChunkedDoNotDelayDelivery(t *testing.T) {
	s := newTestSite(t)
	s.startLive(strings.Replace(s.caddyfile(""), "max_body 64KiB", "max_body 25MiB", 1))

	var idle []net.Conn
	for range 3 {
		conn, err := net.Dial("tcp", siteAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		head := deliveryHead("Transfer-Encoding: chunked", "X-Hub-Signature-256: "+forgedSignature)
		if _, err := io.WriteString(conn, head+"\r\n\r\n10\r\n{\"zen\":\"forged\",\r\n"); err != nil {
			t.Fatal(err)
		}
		idle = append(idle, conn)
	}
	waitSlots(t, "the idle deliveries to hold slots", func(n int) bool { return n >= 3 })

	second := s.repo.Commit("test commit", map[string]string{"index.html": "second"})
	push := fixture(t, "push-branch.json")
	big := append([]byte(`{"pad":"`+strings.Repeat("a", 2<<20)+`",`), push[1:]...)
	status, header, body := send(t, deliveryCase{name: "2 MB push", event: "push", body: big, signWith: testSecret})
	pushCase().check(t, status, header, body)
	s.waitLive(second)
	if n := bodies.inUse(); n < 3 {
		t.Errorf("the idle deliveries hold %d slots, want them still waiting", n)
	}
	for _, conn := range idle {
		conn.Close()
	}
	waitSlots(t, "the idle deliveries to give their slots back", func(n int) bool { return n == 0 })
}

// TestSlowBodyTimesOut: a delivery whose body stops coming is answered 408
// once bodyTimeout has passed (Caddy here sets no read_body timeout), and
// gives its slot back.
func TestSlowBodyTimesOut(t *testing.T) {
	old := bodyTimeout
	bodyTimeout = time.Second
	t.Cleanup(func() { bodyTimeout = old })
	s := newTestSite(t)
	s.startLive(s.caddyfile(""))

	_, resp, body := rawDelivery(t, siteAddr(),
		deliveryHead("Content-Length: 1000", "X-Hub-Signature-256: "+forgedSignature), []byte(`{"zen":`))
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), "reading body timed out") {
		t.Errorf("answer %d %s, want 408 reading body timed out", resp.StatusCode, body)
	}
	waitSlots(t, "the slot to be given back", func(n int) bool { return n == 0 })
}

// TestSecretsTrimmedAndWarned: a secret read with surrounding white space
// (a file's newline) verifies deliveries signed with the secret itself, and
// a secret shorter than 16 bytes loads with a warning in Caddy's log that
// names it by its placeholder, never by its value. On main the newline was
// part of the secret (deliveries got 401) and no warning was logged.
func TestSecretsTrimmedAndWarned(t *testing.T) {
	s := newTestSite(t)
	file := filepath.Join(s.dir, "webhook-secret")
	if err := os.WriteFile(file, []byte(testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const short = "tooShort"
	t.Setenv("CWH_TEST_OLD_SECRET", "  "+short+"\t")
	first := s.repo.Commit("test commit", map[string]string{"index.html": "first"})
	config := strings.Replace(s.caddyfile(""), "{env.CWH_TEST_SECRET}", "{file."+file+"}", 1)
	s.start(config)
	s.waitLive(first)

	second := s.repo.Commit("test commit", map[string]string{"index.html": "second"})
	for _, secret := range []string{testSecret, short} {
		pushDelivery(t, secret)
	}
	s.waitLive(second)

	log, err := os.ReadFile(s.log)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := testkit.ParseLog(bytes.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	var warned []string
	for _, e := range entries {
		if e.Level == "warn" && e.From("http.handlers.github_webhook") && e.Str("secret") != "" {
			warned = append(warned, e.Str("secret"))
		}
	}
	if len(warned) != 1 || warned[0] != "secret 2 {env.CWH_TEST_OLD_SECRET}" {
		t.Errorf("warnings naming a secret: %q, want one about secret 2 by its placeholder:\n%s", warned, log)
	}
	if strings.Contains(string(log), short) || strings.Contains(string(log), testSecret) {
		t.Error("the log holds a secret")
	}
}
