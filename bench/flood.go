package main

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
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
// measures Caddy's peak memory and the genuine delivery's answer. No poll:
// only the genuine delivery can deploy, and deliveries that woke the
// deployer are those counted queued in Caddy's metrics.
func (r *run) flood() error {
	tb, err := r.newTestbed("flood", "", plainSite(10), nil)
	if err != nil {
		return err
	}
	defer tb.caddy.stop()
	s, p := tb.site, tb.caddy
	hwmBefore, rssBefore := p.mem()
	queued := func() (float64, error) {
		return p.metric("caddy_github_webhook_deliveries_total", map[string]string{"event": "push", "result": "queued"})
	}

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
	addr := fmt.Sprintf("127.0.0.1:%d", s.port)
	head := func(extra string) string {
		return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"+
			"X-GitHub-Event: push\r\nX-GitHub-Delivery: %s\r\nX-Hub-Signature-256: sha256=%s\r\n%s\r\n",
			hookPath, addr, testkit.DeliveryID(), strings.Repeat("0", 64), extra)
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
	forged := `{"zen":"` + strings.Repeat("f", forgedSize-10) + `"}`
	floodStart := time.Now()
	var writeErrs atomic.Int64
	for range forgedConns {
		wg.Go(func() {
			c, err := dialForged(addr, head(fmt.Sprintf("Content-Length: %d\r\n", forgedSize))+forged[:forgedSize-1])
			if err != nil {
				writeErrs.Add(1)
				return
			}
			connsMu.Lock()
			conns = append(conns, c)
			connsMu.Unlock()
		})
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
	wakesBefore, err := queued()
	if err != nil {
		return err
	}
	sha, err := tb.repo.Commit("version 1", map[string]string{"index.html": plainIndex(1)})
	if err != nil {
		return err
	}
	payload := pushPayload(tb.first, sha)
	payload = append([]byte(`{"pad":"`+strings.Repeat("p", genuineSize-len(payload)-9)+`",`), payload[1:]...)
	sentAt := time.Now()
	genuine := r.deliver(s, payload)
	_, liveErr := waitLive(s.path, sha, 30*time.Second)
	live := time.Since(sentAt)
	hwm, _ := p.mem()
	close(memDone)

	// What the stalled ones got, once Caddy gave up on them (full run only).
	answers := "not waited for (-short)"
	if !r.short {
		deadline := time.Now().Add(20 * time.Second)
		counts := map[int]int{}
		for _, c := range conns {
			c.wait(time.Until(deadline))
			counts[c.answered()]++
		}
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(counts)) {
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
	wakes, err := queued()
	if err != nil {
		return err
	}

	r.rep.info("the flood", fmt.Sprintf("%d connections declaring %d bytes with a wrong signature, all but the last byte sent in %v (%d failed to connect); %d idle chunked; %d still unanswered when the genuine delivery was sent",
		forgedConns, forgedSize, roundDur(stalledIn), writeErrs.Load(), idleChunked, open))
	r.rep.info("what the forged connections got", answers)
	gval := fmt.Sprintf("%d in %v", genuine.status, roundDur(genuine.elapsed))
	if genuine.err != nil && genuine.status == 0 {
		gval = genuine.err.Error()
	}
	r.rep.check("genuine 2 MB delivery during the flood: answer", gval, "202", genuine.status == http.StatusAccepted)
	r.rep.perf("… answered within", roundDur(genuine.elapsed).String(), "2 s", genuine.status == http.StatusAccepted && genuine.elapsed < 2*time.Second)
	r.rep.check("deliveries that woke the deployer before the genuine one / in all",
		fmt.Sprintf("%.0f / %.0f", wakesBefore, wakes), "0 / 1 (the genuine one)", wakesBefore == 0 && wakes == 1)
	lval := fmt.Sprintf("live %v after it was sent", roundDur(live))
	if liveErr != nil {
		lval = liveErr.Error()
	}
	r.rep.check("its commit goes live", lval, "yes", liveErr == nil)
	rssVal := fmt.Sprintf("%.0f MiB (VmHWM; sampled VmRSS peak %.0f MiB; before the flood %.0f MiB, VmHWM %.0f MiB)",
		mib(hwm), mib(peakRSS.Load()), mib(rssBefore), mib(hwmBefore))
	if r.short {
		r.rep.info("Caddy's peak RSS", rssVal)
	} else {
		r.rep.check("Caddy's peak RSS", rssVal, "< 256 MB", hwm < 256e6)
	}
	return nil
}

// forgedConn is a connection of the flood, and the status of the answer it
// got (0 while there is none, -1 when closed without one).
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
			c.status.Store(-1)
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

func mib(b int64) float64 { return float64(b) / (1 << 20) }
