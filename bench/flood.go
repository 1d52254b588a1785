package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The flood: forgedConns connections each declare a body of forgedSize
// bytes with a well-formed but wrong X-Hub-Signature-256, send all of it
// but the last byte and stall; idleChunked more send one small chunk of a
// chunked body and stall. Meanwhile a genuine signed push of genuineSize
// bytes is delivered.
const (
	forgedConns = 400
	forgedSize  = 1 << 20
	idleChunked = 3
	genuineSize = 2 << 20
)

// flood runs the flood against a Caddy with the default max_body, and
// measures Caddy's peak memory and the genuine delivery's answer.
func (r *run) flood() error {
	const scn = "2. forged-delivery flood"
	dir, err := r.mkdir("flood")
	if err != nil {
		return err
	}
	repo, err := r.newRepo(dir)
	if err != nil {
		return err
	}
	prev, err := repo.commitPush("version 0", plainSite(10))
	if err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	// DEBUG makes the deployer log every wake, also those that find
	// nothing to do. No poll: only the genuine delivery can deploy.
	s := &site{path: dir + "/site", port: port, debug: true}
	p, err := r.startCaddy(dir, s, repo, "")
	if err != nil {
		return err
	}
	defer p.stop()
	ctx := context.Background()
	if _, err := waitLive(ctx, s.path, prev, 60*time.Second); err != nil {
		return err
	}
	hwmBefore, rssBefore := p.mem()
	mark := logSize(p.log)

	var peakRSS atomic.Int64
	memDone := make(chan struct{})
	go func() {
		for {
			if _, rss := p.mem(); rss > peakRSS.Load() {
				peakRSS.Store(rss)
			}
			select {
			case <-memDone:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()

	// The idle chunked connections, then the stalled forged bodies: each
	// has sent its bytes when its write returns.
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	head := func(extra string) string {
		return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"+
			"X-GitHub-Event: push\r\nX-GitHub-Delivery: %s\r\nX-Hub-Signature-256: sha256=%s\r\n%s\r\n",
			hookPath, addr, uuid(), strings.Repeat("0", 64), extra)
	}
	var (
		conns   []*forgedConn
		connsMu sync.Mutex
		wg      sync.WaitGroup
	)
	defer func() {
		for _, c := range conns {
			c.conn.Close()
		}
	}()
	for range idleChunked {
		c, err := dialForged(addr, head("Transfer-Encoding: chunked\r\n")+"10\r\n{\"zen\":\"forged\",\r\n")
		if err != nil {
			return fmt.Errorf("an idle chunked delivery: %w", err)
		}
		conns = append(conns, c)
	}
	forged := []byte(`{"zen":"` + strings.Repeat("f", forgedSize-10) + `"}`)
	floodStart := time.Now()
	var writeErrs atomic.Int64
	for range forgedConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dialForged(addr, head(fmt.Sprintf("Content-Length: %d\r\n", forgedSize))+string(forged[:forgedSize-1]))
			if err != nil {
				writeErrs.Add(1)
				return
			}
			connsMu.Lock()
			conns = append(conns, c)
			connsMu.Unlock()
		}()
	}
	wg.Wait()
	stalledIn := time.Since(floodStart)
	open := 0
	for _, c := range conns {
		if c.answered() == 0 {
			open++
		}
	}

	// The genuine delivery, while they stall.
	wakesBefore := deliveryWakes(logSince(p.log, mark))
	sha, err := repo.commitPush("version 1", map[string][]byte{"index.html": plainIndex(1)})
	if err != nil {
		return err
	}
	payload := pushPayload(prev, sha)
	payload = append([]byte(`{"pad":"`+strings.Repeat("p", genuineSize-len(payload)-9)+`",`), payload[1:]...)
	sentAt := time.Now()
	genuine := deliver(s.url(hookPath), r.secret, payload)
	_, liveErr := waitLive(ctx, s.path, sha, 30*time.Second)
	live := time.Since(sentAt)
	hwm, _ := p.mem()
	close(memDone)

	// A delivery answered 202 has woken the deployer: wait for its log line.
	var entries []logEntry
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		entries = logSince(p.log, mark)
		if deliveryWakes(entries) > 0 || genuine.status != http.StatusAccepted || time.Now().After(deadline) {
			break
		}
	}
	wakes := deliveryWakes(entries)

	// What the stalled ones got, once Caddy gave up on them (full run only).
	answers := "not waited for (-short)"
	if !r.short {
		deadline := time.Now().Add(20 * time.Second)
		for _, c := range conns {
			c.wait(time.Until(deadline))
		}
		counts := map[int]int{}
		for _, c := range conns {
			counts[c.answered()]++
		}
		var keys []int
		for k := range counts {
			keys = append(keys, k)
		}
		sort.Ints(keys)
		var parts []string
		for _, k := range keys {
			switch k {
			case 0:
				parts = append(parts, fmt.Sprintf("%d no answer yet", counts[k]))
			case -1:
				parts = append(parts, fmt.Sprintf("%d closed without an answer", counts[k]))
			default:
				parts = append(parts, fmt.Sprintf("%d × %d", counts[k], k))
			}
		}
		answers = strings.Join(parts, ", ") + fmt.Sprintf(" (%v after the flood started)", roundDur(time.Since(floodStart)))
	}

	r.rep.info(scn, "the flood", fmt.Sprintf("%d connections declaring %d bytes with a wrong signature, all but the last byte sent in %v (%d failed to connect); %d idle chunked; %d still unanswered when the genuine delivery was sent",
		forgedConns, forgedSize, roundDur(stalledIn), writeErrs.Load(), idleChunked, open))
	r.rep.info(scn, "what the forged connections got", answers)
	gval := fmt.Sprintf("%d in %v", genuine.status, roundDur(genuine.elapsed))
	if genuine.err != nil && genuine.status == 0 {
		gval = genuine.err.Error()
	}
	r.rep.check(scn, "genuine 2 MB delivery during the flood: answer", gval, "202", genuine.status == http.StatusAccepted)
	if !r.short {
		r.rep.perf(scn, "… answered within", roundDur(genuine.elapsed).String(), "2 s", genuine.status == http.StatusAccepted && genuine.elapsed < 2*time.Second)
	}
	r.rep.check(scn, "deliveries that woke the deployer before the genuine one / in all",
		fmt.Sprintf("%d / %d", wakesBefore, wakes), "0 / 1 (the genuine one)", wakesBefore == 0 && wakes == 1)
	lval := fmt.Sprintf("live %v after it was sent", roundDur(live))
	if liveErr != nil {
		lval = liveErr.Error()
	}
	r.rep.check(scn, "its commit goes live", lval, "yes", liveErr == nil)
	rssVal := fmt.Sprintf("%.0f MiB (VmHWM; sampled VmRSS peak %.0f MiB; before the flood %.0f MiB, VmHWM %.0f MiB)",
		mib(hwm), mib(peakRSS.Load()), mib(rssBefore), mib(hwmBefore))
	if r.short {
		r.rep.info(scn, "Caddy's peak RSS", rssVal)
	} else {
		r.rep.check(scn, "Caddy's peak RSS", rssVal, "< 256 MB", hwm < 256e6)
	}
	return nil
}

// forgedConn is a connection of the flood, and the status of the answer it
// got (0 while there is none).
type forgedConn struct {
	conn   net.Conn
	status atomic.Int64
	done   chan struct{}
}

// dialForged connects to addr, writes req, and reads the answer in the
// background.
func dialForged(addr, req string) (*forgedConn, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c := &forgedConn{conn: conn, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			c.status.Store(-1) // closed without an answer
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		c.status.Store(int64(resp.StatusCode))
	}()
	conn.SetWriteDeadline(time.Now().Add(time.Minute))
	if _, err := io.WriteString(conn, req); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

func (c *forgedConn) answered() int { return int(c.status.Load()) }

// wait waits at most d for the answer.
func (c *forgedConn) wait(d time.Duration) {
	select {
	case <-c.done:
	case <-time.After(max(d, 0)):
	}
}

// deliveryWakes counts deploys that deliveries started: the deployer logs
// "deploying", or at DEBUG "tip is live", with the reason of every wake.
func deliveryWakes(entries []logEntry) int {
	n := 0
	for _, e := range entries {
		if m := e.str("msg"); (m == "deploying" || m == "tip is live") && e.str("reason") == "delivery" {
			n++
		}
	}
	return n
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
