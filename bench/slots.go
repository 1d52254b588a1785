package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// The slot attack: trickling connections (HTTP/1.1) or streams (HTTP/2,
// h2c, slotStreams to a connection) from the loopback addresses 127.0.0.2
// to 127.0.0.254 in turn, each a forged delivery with a well-formed
// X-Hub-Signature-256 declaring slotBodySize bytes and sending them one a
// second, started again as soon as it is answered. Meanwhile genuine signed
// pushes from 127.0.0.1, one every slotGenuineEvery, each on a new
// connection as GitHub sends them.
const (
	slotStreams      = 100
	slotBodySize     = 10_000
	slotGenuine      = 75
	slotGenuineEvery = 200 * time.Millisecond
)

// slots runs the attack at 1,100 and 5,000 connections, over HTTP/1.1 and
// over HTTP/2, each against a new Caddy with the default slots, and
// reports the genuine deliveries' latency and answers. The short run does
// 1,100 connections with 10 genuine deliveries, and asserts that none was
// answered 503.
func (r *run) slots() error {
	sizes, genuine := []int{1100, 5000}, slotGenuine
	if r.short {
		sizes, genuine = []int{1100}, 10
	}
	for _, h2 := range []bool{false, true} {
		for _, conns := range sizes {
			if err := r.slotAttack(h2, conns, genuine); err != nil {
				return err
			}
		}
	}
	return nil
}

// slotAttack runs one attack of conns trickling connections (streams, over
// HTTP/2), and sends genuine deliveries during it.
func (r *run) slotAttack(h2 bool, conns, genuine int) error {
	proto, global := "HTTP/1.1", ""
	if h2 {
		proto, global = "HTTP/2 (h2c)", "servers {\n\t\tprotocols h1 h2c\n\t}"
	}
	name := fmt.Sprintf("slots-%s-%d", map[bool]string{false: "h1", true: "h2"}[h2], conns)
	dir, err := r.mkdir(name)
	if err != nil {
		return err
	}
	repo, err := testkit.NewRepo(dir, benchBranch)
	if err != nil {
		return err
	}
	first, err := repo.Commit("version 0", plainSite(10))
	if err != nil {
		return err
	}
	// Ports picked free may be taken by then (the attackers' sockets set
	// SO_REUSEADDR for that, but other processes' do not): Caddy gets
	// three tries.
	var s *site
	var p *caddyProc
	for try := 1; ; try++ {
		ports, err := testkit.FreePorts(1)
		if err != nil {
			return err
		}
		s = &site{path: dir + "/site", port: ports[0], remote: "file://" + repo.Bare}
		p, err = r.launch(dir, s, global, nil, []string{fmt.Sprintf("127.0.0.1:%d", s.port)})
		if err == nil {
			break
		}
		if try == 3 {
			return err
		}
		r.logf("%s: %v; again", name, err)
	}
	defer p.stop()
	if _, err := waitLive(s.path, first, time.Minute); err != nil {
		return err
	}
	sha, err := repo.Commit("version 1", map[string]string{"index.html": plainIndex(1)})
	if err != nil {
		return err
	}
	payload := pushPayload(first, sha)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	var started, answered atomic.Int64
	addr := fmt.Sprintf("127.0.0.1:%d", s.port)
	if h2 {
		for i := 0; i*slotStreams < conns; i++ {
			streams := min(slotStreams, conns-i*slotStreams)
			trickleH2(ctx, &wg, attacker(i), addr, streams, &started, &answered)
		}
	} else {
		for i := range conns {
			trickleH1(ctx, &wg, attacker(i), addr, &started, &answered)
		}
	}
	// Let every connection send its head and a few bytes: on the code
	// before fair slots, the first 1,024 then hold every slot.
	for deadline := time.Now().Add(time.Minute); started.Load() < int64(conns); {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %d of %d trickling connections started in a minute", name, started.Load(), conns)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	hwmBefore, _ := p.mem()

	var took []time.Duration
	counts := map[int]int{}
	var failed []string
	for i := range genuine {
		if i > 0 {
			time.Sleep(slotGenuineEvery)
		}
		d := r.deliverOver(h2, s, payload)
		switch {
		case d.err != nil && d.status == 0:
			counts[0]++
			failed = append(failed, d.err.Error())
		default:
			counts[d.status]++
			took = append(took, d.elapsed)
		}
	}
	hwm, _ := p.mem()
	slices.Sort(took)

	var parts []string
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		if k == 0 {
			parts = append(parts, fmt.Sprintf("%d failed (%s)", counts[k], failed[0]))
		} else {
			parts = append(parts, fmt.Sprintf("%d × %d", counts[k], k))
		}
	}
	label := fmt.Sprintf("%s, %d trickling", proto, conns)
	if h2 {
		label += fmt.Sprintf(" streams on %d connections", (conns+slotStreams-1)/slotStreams)
	} else {
		label += " connections"
	}
	r.rep.info(label+": the attack", fmt.Sprintf("%d forged deliveries answered during it; Caddy's VmHWM %.0f MiB (%.0f MiB when the genuine ones began)",
		answered.Load(), mib(hwm), mib(hwmBefore)))
	r.rep.check(label+": genuine deliveries' answers", strings.Join(parts, ", "), fmt.Sprintf("%d × 202", genuine), counts[http.StatusAccepted] == genuine)
	r.rep.perf(label+": genuine → answer p50 / p99 / max", fmt.Sprintf("%v / %v / %v", pct(took, 50), pct(took, 99), pct(took, 100)),
		"p99 < 1 s", len(took) > 0 && pct(took, 99) < time.Second)
	return nil
}

// attackerDialer dials from ip with SO_REUSEADDR: the thousands of
// sockets of an attack that linger in TIME_WAIT then keep no listener
// (the next Caddy's) off their port.
func attackerDialer(ip net.IP) *net.Dialer {
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 10 * time.Second,
		Control: func(_, _ string, c syscall.RawConn) error {
			var err error
			c.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1) })
			return err
		}}
}

// attacker returns the i-th attacker's address: 127.0.0.2 to 127.0.0.254
// in turn.
func attacker(i int) net.IP { return net.IPv4(127, 0, 0, byte(2+i%253)) }

// forgedHeader fills the headers of a forged delivery.
func forgedHeader(h http.Header) {
	h.Set("Content-Type", "application/json")
	h.Set("X-GitHub-Event", "push")
	h.Set("X-GitHub-Delivery", testkit.DeliveryID())
	h.Set("X-Hub-Signature-256", "sha256="+strings.Repeat("0", 64))
}

// trickleH1 runs one trickling HTTP/1.1 connection from ip to addr until
// ctx ends: the head of a forged delivery, then a byte a second; once it
// is answered or closed, it dials again. started counts connections that
// sent their head, answered those answered.
func trickleH1(ctx context.Context, wg *sync.WaitGroup, ip net.IP, addr string, started, answered *atomic.Int64) {
	h := http.Header{}
	forgedHeader(h)
	var head strings.Builder
	fmt.Fprintf(&head, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n", hookPath, addr, slotBodySize)
	h.Write(&head)
	head.WriteString("\r\n")
	dialer := attackerDialer(ip)
	first := true
	wg.Go(func() {
		for ctx.Err() == nil {
			conn, err := dialer.DialContext(ctx, "tcp", addr)
			if err != nil {
				pause(ctx, time.Second)
				continue
			}
			closed := make(chan struct{})
			go func() {
				buf := make([]byte, 512)
				if n, _ := conn.Read(buf); n > 0 {
					answered.Add(1)
				}
				close(closed)
			}()
			_, err = io.WriteString(conn, head.String())
			if first {
				started.Add(1)
				first = false
			}
			tick := time.NewTicker(time.Second)
		trickle:
			for i := 0; err == nil && i < slotBodySize-1; i++ {
				select {
				case <-ctx.Done():
					break trickle
				case <-closed:
					break trickle
				case <-tick.C:
					_, err = io.WriteString(conn, " ")
				}
			}
			tick.Stop()
			conn.Close()
			<-closed
		}
	})
}

// trickleH2 runs streams trickling forged deliveries over one h2c
// connection from ip to addr until ctx ends; each is started again once
// it is answered.
func trickleH2(ctx context.Context, wg *sync.WaitGroup, ip net.IP, addr string, streams int, started, answered *atomic.Int64) {
	dialer := attackerDialer(ip)
	tr := &http.Transport{DialContext: dialer.DialContext, Protocols: new(http.Protocols), MaxConnsPerHost: 1}
	tr.Protocols.SetUnencryptedHTTP2(true)
	client := &http.Client{Transport: tr}
	for range streams {
		first := true
		wg.Go(func() {
			for ctx.Err() == nil {
				body := &slowBody{ctx: ctx, left: slotBodySize}
				if first {
					body.started = started
					first = false
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+hookPath, body)
				req.ContentLength = slotBodySize
				forgedHeader(req.Header)
				resp, err := client.Do(req)
				if err != nil {
					pause(ctx, time.Second)
					continue
				}
				answered.Add(1)
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

// slowBody yields a space a second until left are sent or ctx ends; the
// first byte counts in started, if set.
type slowBody struct {
	ctx     context.Context
	left    int
	started *atomic.Int64
	sent    bool
}

func (b *slowBody) Read(p []byte) (int, error) {
	if b.left == 0 {
		return 0, io.EOF
	}
	if b.sent && !pause(b.ctx, time.Second) {
		return 0, b.ctx.Err()
	}
	if !b.sent && b.started != nil {
		b.started.Add(1)
	}
	b.sent = true
	b.left--
	p[0] = ' '
	return 1, nil
}

// pause waits d, or less if ctx ends; it reports whether ctx still lasts.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// deliverOver sends payload as a signed push delivery on a new connection,
// over h2c when h2, else as deliver does.
func (r *run) deliverOver(h2 bool, s *site, payload []byte) delivery {
	if !h2 {
		return r.deliver(s, payload)
	}
	req, err := testkit.Delivery{Event: "push", Secret: r.secret, Body: payload}.Request(s.url(hookPath))
	if err != nil {
		return delivery{err: err}
	}
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	return send(&http.Client{Timeout: 30 * time.Second, Transport: tr}, req)
}
