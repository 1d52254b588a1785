package caddywebhook

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"
)

// smallSlots is the number of body slots of the github_webhook handlers
// that the attack tests load (as github_webhook_small_budget): enough
// trickling connections to take them all are a few dozen, not a thousand.
const smallSlots = 16

// smallBudget is the budget of every github_webhook_small_budget handler,
// as bodies is that of every github_webhook handler of the process. Its
// module's constructor gives it to them.
var smallBudget = newBodyBudget(smallSlots, 5*time.Second)

func init() {
	caddy.RegisterModule(smallBudgetHandler{})
}

// smallBudgetHandler is github_webhook with smallBudget instead of the
// process's budget.
type smallBudgetHandler struct{ Handler }

func (smallBudgetHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.github_webhook_small_budget",
		New: func() caddy.Module { return &smallBudgetHandler{Handler{bodies: smallBudget}} },
	}
}

// startSmallBudget loads the site's Caddyfile, with global options added to
// its global block, its github_webhook handler replaced by
// github_webhook_small_budget; it waits until the first commit is live.
func (s *testSite) startSmallBudget(global string) {
	s.t.Helper()
	config := strings.Replace(s.caddyfile(""), "grace_period 1s", "grace_period 1s\n"+global, 1)
	adapted, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(config), nil)
	if err != nil {
		s.t.Fatalf("adapting the Caddyfile: %v %v", err, warnings)
	}
	const from, to = `"handler":"github_webhook"`, `"handler":"github_webhook_small_budget"`
	if strings.Count(string(adapted), from) != 1 {
		s.t.Fatalf("the adapted configuration has not one github_webhook handler: %s", adapted)
	}
	first := s.repo.Commit("first version", map[string]string{"index.html": "first"})
	startCaddy(s.t)
	tester := caddytest.NewTester(s.t).WithDefaultOverrides(caddytest.Config{AdminPort: adminPort})
	tester.InitServer(strings.Replace(string(adapted), from, to, 1), "json")
	if s.t.Failed() {
		s.t.FailNow()
	}
	s.t.Cleanup(func() {
		if err := loadConfig(emptyConfig); err != nil {
			s.t.Errorf("unloading the test config: %v", err)
		}
	})
	s.waitLive(first)
}

// loopback returns the loopback address 127.0.0.n, a source address of its
// own for a test's client on Linux.
func loopback(n int) net.IP { return net.IPv4(127, 0, 0, byte(n)) }

// dialerFrom dials from the loopback address ip, with SO_REUSEADDR: its
// sockets that linger in TIME_WAIT then keep no later test's Caddy off
// their port.
func dialerFrom(ip net.IP) *net.Dialer {
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 10 * time.Second,
		Control: func(_, _ string, c syscall.RawConn) error {
			var err error
			c.Control(func(fd uintptr) { err = reuseAddr(fd) })
			return err
		}}
}

// trickleHTTP1 runs conns connections from ip until ctx ends, each sending
// the head of a forged delivery declaring 1000 bytes, then its body one
// byte every half second. A connection that is answered or closed is dialled
// again, as an attacker would.
func trickleHTTP1(ctx context.Context, wg *sync.WaitGroup, ip net.IP, conns int) {
	head := deliveryHead("Content-Length: 1000", "X-Hub-Signature-256: "+forgedSignature) + "\r\n\r\n"
	addr := fmt.Sprintf("127.0.0.1:%d", httpPort)
	for range conns {
		wg.Go(func() {
			for ctx.Err() == nil {
				conn, err := dialerFrom(ip).DialContext(ctx, "tcp", addr)
				if err != nil {
					sleep(ctx, 100*time.Millisecond)
					continue
				}
				stop := context.AfterFunc(ctx, func() { conn.Close() })
				_, err = io.WriteString(conn, head)
				for i := 0; err == nil && i < 999 && ctx.Err() == nil; i++ {
					sleep(ctx, 500*time.Millisecond)
					_, err = io.WriteString(conn, " ")
				}
				stop()
				conn.Close()
			}
		})
	}
}

// trickleHTTP2 runs streams forged deliveries over one h2c connection from
// ip until ctx ends, each declaring 1000 bytes and sending them one every
// half second; a stream that is answered is started again.
func trickleHTTP2(ctx context.Context, wg *sync.WaitGroup, ip net.IP, streams int) {
	tr := &http.Transport{DialContext: dialerFrom(ip).DialContext, Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	client := &http.Client{Transport: tr}
	for range streams {
		wg.Go(func() {
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost,
					fmt.Sprintf("http://127.0.0.1:%d/_github", httpPort), &trickle{ctx: ctx, left: 1000})
				req.Host = siteAddr()
				req.ContentLength = 1000
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-GitHub-Event", "push")
				req.Header.Set("X-Hub-Signature-256", forgedSignature)
				resp, err := client.Do(req)
				if err != nil {
					sleep(ctx, 100*time.Millisecond)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Go(func() {
		<-ctx.Done()
		tr.CloseIdleConnections()
	})
}

// trickle is a body that yields a space every half second until left is
// sent or ctx ends.
type trickle struct {
	ctx  context.Context
	left int
}

func (b *trickle) Read(p []byte) (int, error) {
	if b.left == 0 {
		return 0, io.EOF
	}
	if !sleep(b.ctx, 500*time.Millisecond) {
		return 0, b.ctx.Err()
	}
	b.left--
	p[0] = ' '
	return 1, nil
}

// sleep waits d, or less if ctx ends; it reports whether ctx still lasts.
func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// genuinePushes sends n genuine signed pushes, one after the other, with
// client, and checks that each is answered 202 queued within limit.
func genuinePushes(t *testing.T, client *http.Client, n int, limit time.Duration) {
	t.Helper()
	push := pushCase()
	push.body = fixture(t, "push-branch.json")
	for i := range n {
		start := time.Now()
		resp, err := client.Do(push.request(t, hookURL))
		if err != nil {
			t.Fatalf("genuine push %d: %v", i+1, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		t.Logf("genuine push %d: %d in %v", i+1, resp.StatusCode, took.Round(time.Millisecond))
		push.check(t, resp.StatusCode, resp.Header, body)
		if took > limit {
			t.Errorf("genuine push %d answered in %v, want within %v", i+1, took, limit)
		}
	}
}

// attack starts the trickling clients with start, waits until they hold
// every slot of smallBudget, and returns a function that stops them and
// waits until the slots are free again.
func attack(t *testing.T, start func(ctx context.Context, wg *sync.WaitGroup)) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	start(ctx, &wg)
	stop = func() {
		cancel()
		wg.Wait()
		waitBudget(t, "the attack's slots to be given back", func(n int) bool { return n == 0 })
	}
	t.Cleanup(stop)
	waitBudget(t, "the attack to hold every slot", func(n int) bool { return n == smallSlots })
	// Let the attack settle: its connections fight over the slots at first.
	time.Sleep(time.Second)
	return stop
}

// waitBudget waits until the number of slots of smallBudget taken
// satisfies ok.
func waitBudget(t *testing.T, what string, ok func(taken int) bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for n := smallBudget.inUse(); !ok(n); n = smallBudget.inUse() {
		if time.Now().After(deadline) {
			t.Fatalf("waited a minute for %s: %d of %d slots taken", what, n, smallSlots)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSlotAttackHTTP1: 48 connections from 4 addresses (127.0.0.2 to
// 127.0.0.5), each a forged delivery trickling its body one byte every
// half second, three times the handler's 16 body slots, and redialled as
// soon as they are answered; meanwhile genuine signed pushes from another
// address are answered 202 within 2 s (the design gives 1 s). On main the
// trickling connections held every slot until their 10 s read deadline,
// and every genuine push was answered 503 at once.
func TestSlotAttackHTTP1(t *testing.T) {
	s := newTestSite(t)
	s.startSmallBudget("")
	stop := attack(t, func(ctx context.Context, wg *sync.WaitGroup) {
		for i := range 4 {
			trickleHTTP1(ctx, wg, loopback(2+i), 12)
		}
	})
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	genuinePushes(t, client, 5, 2*time.Second)
	stop()
}

// TestSlotAttackHTTP2: one h2c connection from 127.0.0.6 carrying 48
// forged deliveries that trickle their bodies, three times the handler's
// 16 body slots, each started again as soon as it is answered; meanwhile
// genuine signed pushes over h2c from another address are answered 202
// within 2 s. On main the streams of that one connection held every slot,
// and every genuine push was answered 503.
func TestSlotAttackHTTP2(t *testing.T) {
	s := newTestSite(t)
	s.startSmallBudget("servers {\n\t\tprotocols h1 h2c\n\t}")
	stop := attack(t, func(ctx context.Context, wg *sync.WaitGroup) {
		trickleHTTP2(ctx, wg, loopback(6), 48)
	})
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	genuinePushes(t, &http.Client{Timeout: 10 * time.Second, Transport: tr}, 5, 2*time.Second)
	stop()
}

// bodyHolder is a body holding a slot in the budget tests, and whether its
// slot was taken.
type bodyHolder struct {
	s     *slot
	taken chan struct{}
}

// hold takes a slot of b for client key, failing the test if none comes.
func hold(t *testing.T, b *bodyBudget, key string) *bodyHolder {
	t.Helper()
	h := &bodyHolder{taken: make(chan struct{})}
	if h.s = b.acquire(context.Background(), key, func() { close(h.taken) }); h.s == nil {
		t.Fatalf("%s got no slot", key)
	}
	return h
}

// wasTaken reports whether h's slot was taken.
func (h *bodyHolder) wasTaken() bool {
	select {
	case <-h.taken:
		return true
	default:
		return false
	}
}

// acquireAsync asks b for a slot for client key in the background; the
// slot, or nil, comes on the channel.
func acquireAsync(ctx context.Context, b *bodyBudget, key string) <-chan *slot {
	ch := make(chan *slot, 1)
	go func() { ch <- b.acquire(ctx, key, func() {}) }()
	return ch
}

// TestBudgetTakesFromTheBiggest: with every slot taken, a request from a
// client holding none takes, once it has been read for evictAfter, the
// oldest slot of the client holding the most (three of four), which stops
// that body; the slot passes to the request only when that body gives it
// back, so no more bodies than slots are ever read. On main the request
// was refused at once.
func TestBudgetTakesFromTheBiggest(t *testing.T) {
	b := newBodyBudget(4, 5*time.Second)
	a1, small, a2, a3 := hold(t, b, "192.0.2.1"), hold(t, b, "192.0.2.2"), hold(t, b, "192.0.2.1"), hold(t, b, "192.0.2.1")
	start := time.Now()
	got := acquireAsync(context.Background(), b, "198.51.100.7")
	<-a1.taken
	if took := time.Since(start); took < evictAfter/2 {
		t.Errorf("a body was stopped %v after it started, want after %v", took, evictAfter)
	}
	for name, h := range map[string]*bodyHolder{"the other client's": small, "a newer one": a2, "the newest": a3} {
		if h.wasTaken() {
			t.Errorf("%s slot was taken, want the biggest client's oldest only", name)
		}
	}
	select {
	case <-got:
		t.Fatal("the slot passed before the stopped body gave it back")
	case <-time.After(50 * time.Millisecond):
	}
	if n := b.inUse(); n != 4 {
		t.Errorf("%d slots taken, want 4", n)
	}
	b.release(a1.s)
	s := <-got
	if s == nil {
		t.Fatal("the request got no slot")
	}
	for _, x := range []*slot{s, small.s, a2.s, a3.s} {
		b.release(x)
	}
	if n, c := b.inUse(), len(b.clients); n != 0 || c != 0 {
		t.Errorf("%d slots and %d clients left, want none", n, c)
	}
}

// TestBudgetKeepsEvenShares: a client cannot take a slot from one that
// holds at most one more than it does, so clients with even shares keep
// them: its request waits, and is refused once the budget's wait is over,
// or its context ends. On main the request was refused at once.
func TestBudgetKeepsEvenShares(t *testing.T) {
	b := newBodyBudget(4, evictAfter*3)
	var held []*bodyHolder
	for _, key := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.1", "192.0.2.2"} {
		held = append(held, hold(t, b, key))
	}
	start := time.Now()
	if s := b.acquire(context.Background(), "192.0.2.1", func() {}); s != nil {
		t.Error("a client holding 2 of 4 slots took one from a client holding 2")
	}
	if took := time.Since(start); took < b.wait/2 {
		t.Errorf("refused after %v, want after half the wait of %v or more", took, b.wait)
	}
	ctx, cancel := context.WithCancel(context.Background())
	got := acquireAsync(ctx, b, "192.0.2.2")
	cancel()
	if s := <-got; s != nil {
		t.Error("a request whose context ended got a slot")
	}
	for _, h := range held {
		if h.wasTaken() {
			t.Error("a slot was taken")
		}
		b.release(h.s)
	}
	if n, c, q := b.inUse(), len(b.clients), len(b.waiting); n != 0 || c != 0 || q != 0 {
		t.Errorf("%d slots, %d clients and %d waiting left, want none", n, c, q)
	}
}

// TestBudgetFreedSlotToTheFewest: a slot that frees goes to the waiting
// request whose client holds the fewest slots, not to the one that waited
// longest. On main both were refused at once.
func TestBudgetFreedSlotToTheFewest(t *testing.T) {
	b := newBodyBudget(2, 5*time.Second)
	a, other := hold(t, b, "192.0.2.1"), hold(t, b, "192.0.2.2")
	first := acquireAsync(context.Background(), b, "192.0.2.1") // holds 1
	waitUntil(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.waiting) == 1 })
	fewest := acquireAsync(context.Background(), b, "2001:db8::1") // holds none
	waitUntil(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.waiting) == 2 })
	b.release(other.s)
	s := <-fewest
	select {
	case <-first:
		t.Fatal("the request that waited longest, from a client holding a slot, got one too")
	default:
	}
	b.release(s)
	b.release((<-first))
	b.release(a.s)
	if n, c := b.inUse(), len(b.clients); n != 0 || c != 0 {
		t.Errorf("%d slots and %d clients left, want none", n, c)
	}
}

// waitUntil waits, a minute at most, until ok holds.
func waitUntil(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !ok(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("waited a minute")
		}
	}
}

// TestClientKey: a client is an IPv4 address, or the /64 of an IPv6 one,
// with or without a port.
func TestClientKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":                 "192.0.2.1",
		"192.0.2.1:4321":            "192.0.2.1",
		"[::ffff:192.0.2.1]:80":     "192.0.2.1",
		"2001:db8:1:2:3:4:5:6":      "2001:db8:1:2::/64",
		"[2001:db8:1:2::9%eth0]:80": "2001:db8:1:2::/64",
		"not an address":            "not an address",
	} {
		if got := clientKey(in); got != want {
			t.Errorf("clientKey(%q) = %q, want %q", in, got, want)
		}
	}
}
