package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// defaultMaxBody is the handler's max_body when none is configured (DESIGN.md).
const defaultMaxBody = 25 << 20

// flood sends forged deliveries (bad signatures, bodies up to max_body) from
// 100 concurrent clients, and meanwhile measures Caddy's memory, another
// site of the same Caddy, and a genuine delivery sent halfway through.
func (r *run) flood() error {
	const scn = "2. forged-delivery flood"
	clients, floodFor, quiet := 100, 20*time.Second, 2*time.Second
	if r.short {
		floodFor, quiet = 4*time.Second, time.Second
	}
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
	other := filepath.Join(dir, "other")
	if err := os.MkdirAll(other, 0o755); err != nil {
		return err
	}
	otherPage := []byte("<!doctype html><title>another site</title><p>served by the same Caddy</p>\n")
	if err := os.WriteFile(filepath.Join(other, "index.html"), otherPage, 0o644); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	otherPort, err := freePort()
	if err != nil {
		return err
	}
	// poll catches a genuine delivery the flood might crowd out; DEBUG makes
	// the deployer log every wake, also those that find nothing to do.
	s := &site{path: dir + "/site", port: port, extra: []string{"poll 5s"}, debug: true}
	more := fmt.Sprintf("http://127.0.0.1:%d {\n\troot * %s\n\tfile_server\n}", otherPort, other)
	p, err := r.startCaddy(dir, s, repo, more)
	if err != nil {
		return err
	}
	defer p.stop()
	ctx := context.Background()
	if _, err := waitLive(ctx, s.path, prev, 60*time.Second); err != nil {
		return err
	}
	otherURL := fmt.Sprintf("http://127.0.0.1:%d/", otherPort)

	// The other site, before the flood.
	hwmBefore, _ := p.mem()
	stopProbe := probe(otherURL, otherPage)
	time.Sleep(quiet)
	before := stopProbe()

	// The flood.
	mark := logSize(p.log)
	big := bytes.Repeat([]byte(`{"zen":"forged"}`), defaultMaxBody/16)
	fctx, cancel := context.WithTimeout(ctx, floodFor)
	defer cancel()
	var (
		wg                sync.WaitGroup
		mu                sync.Mutex
		statuses          = map[int]int{}
		clientErrs        int
		firstClientErr    string
		sent, sentChunked atomic.Int64
		sentBytes         atomic.Int64
	)
	floodClient := &http.Client{
		Timeout:   2 * time.Minute,
		Transport: &http.Transport{MaxIdleConnsPerHost: clients, DisableCompression: true},
	}
	var peakRSS atomic.Int64
	memDone := make(chan struct{})
	go func() {
		for {
			_, rss := p.mem()
			if rss > peakRSS.Load() {
				peakRSS.Store(rss)
			}
			select {
			case <-memDone:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	stopProbe = probe(otherURL, otherPage)
	floodStart := time.Now()
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
			for fctx.Err() == nil {
				// Half at exactly max_body, half anywhere from 1 MiB up to
				// it; one in four without a Content-Length (chunked).
				size := int64(defaultMaxBody)
				if rng.IntN(2) == 0 {
					size = 1<<20 + rng.Int64N(defaultMaxBody-1<<20)
				}
				chunked := rng.IntN(4) == 0
				var body io.Reader = bytes.NewReader(big[:size])
				if chunked {
					body = struct{ io.Reader }{body} // hides the length
				}
				req, _ := http.NewRequestWithContext(fctx, http.MethodPost, s.url(hookPath), body)
				if !chunked {
					req.ContentLength = size
				}
				var mac [32]byte
				for j := range mac {
					mac[j] = byte(rng.IntN(256))
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-GitHub-Event", "push")
				req.Header.Set("X-GitHub-Delivery", uuid())
				req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac[:]))
				resp, err := floodClient.Do(req)
				if fctx.Err() != nil {
					if err == nil {
						resp.Body.Close()
					}
					return // the flood is over; what was in flight does not count
				}
				sent.Add(1)
				sentBytes.Add(size)
				if chunked {
					sentChunked.Add(1)
				}
				if err != nil {
					mu.Lock()
					clientErrs++
					if firstClientErr == "" {
						firstClientErr = err.Error()
					}
					mu.Unlock()
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				statuses[resp.StatusCode]++
				mu.Unlock()
			}
		}()
	}

	// Halfway through: a genuine push and its delivery.
	time.Sleep(floodFor / 2)
	wakesBefore := deliveryWakes(logSince(p.log, mark))
	sha, err := repo.commitPush("version 1", map[string][]byte{"index.html": plainIndex(1)})
	if err != nil {
		return err
	}
	sentAt := time.Now()
	var genuine delivery
	genuineDone := make(chan struct{})
	go func() { genuine = r.pushDelivery(s, prev, sha); close(genuineDone) }()
	wg.Wait()
	floodTook := time.Since(floodStart)
	during := stopProbe()
	close(memDone)
	hwm, _ := p.mem()
	_, liveErr := waitLive(ctx, s.path, sha, 30*time.Second)
	live := time.Since(sentAt)
	<-genuineDone
	// A delivery answered 202 has woken the deployer: wait for its log line.
	var entries []logEntry
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		entries = logSince(p.log, mark)
		if deliveryWakes(entries) > 0 || genuine.status != http.StatusAccepted || time.Now().After(deadline) {
			break
		}
	}
	wakes := deliveryWakes(entries)
	var deployed []string
	deployedBy := ""
	for _, e := range withMsg(entries, "deploying") {
		deployed = append(deployed, short(e.str("commit")))
		if e.str("commit") == sha {
			deployedBy = e.str("reason")
		}
	}

	// The figures.
	var codes []string
	keys := make([]int, 0, len(statuses))
	for k := range statuses {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	accepted := 0
	for _, k := range keys {
		codes = append(codes, fmt.Sprintf("%d × %d", statuses[k], k))
		if k >= 200 && k < 300 {
			accepted += statuses[k]
		}
	}
	if clientErrs > 0 {
		codes = append(codes, fmt.Sprintf("%d closed by the server before an answer (%s)", clientErrs, firstClientErr))
	}
	r.rep.info(scn, "forged deliveries", fmt.Sprintf("%d (%.1f GiB) in %v from %d clients; max_body %d MiB (the default); half at max_body, ¼ chunked",
		sent.Load(), float64(sentBytes.Load())/(1<<30), floodTook.Round(100*time.Millisecond), clients, defaultMaxBody>>20))
	r.rep.info(scn, "their answers", strings.Join(codes, ", "))
	r.rep.check(scn, "forged deliveries answered 2xx", fmt.Sprint(accepted), "0", accepted == 0)
	r.rep.check(scn, "deliveries that woke the deployer before the genuine one / in all",
		fmt.Sprintf("%d / %d; deploys: %v", wakesBefore, wakes, deployed),
		"0 / 1 (the genuine one)", wakesBefore == 0 && wakes <= 1 && (len(deployed) == 0 || len(deployed) == 1 && deployed[0] == short(sha)))
	r.rep.check(scn, "Caddy's peak RSS (VmHWM)", fmt.Sprintf("%.0f MiB (%.0f MiB before the flood; sampled VmRSS peak %.0f MiB)",
		mib(hwm), mib(hwmBefore), mib(peakRSS.Load())), "< 512 MB", hwm < 512e6)
	r.rep.info(scn, "other site: latency p50 / p99 / max, before vs during", fmt.Sprintf("%v / %v / %v vs %v / %v / %v (%d vs %d requests)",
		pct(before.lat, 50), pct(before.lat, 99), roundDur(before.max()), pct(during.lat, 50), pct(during.lat, 99), roundDur(during.max()), len(before.lat), len(during.lat)))
	r.rep.check(scn, "other site: errors during the flood", fmt.Sprintf("%d (%s)", during.errs, firstOf(during.firstErr)), "0", during.errs == 0 && before.errs == 0)
	gval := ""
	if genuine.err != nil && genuine.status == 0 {
		gval = genuine.err.Error()
	} else {
		gval = fmt.Sprintf("%d in %v", genuine.status, roundDur(genuine.elapsed))
	}
	r.rep.perf(scn, "genuine delivery during the flood: answer", gval, "2xx within 1 s", genuine.status/100 == 2 && genuine.elapsed < time.Second)
	lval := fmt.Sprintf("live %v after it was sent, deployed on a %s wake", roundDur(live), deployedBy)
	if liveErr != nil {
		lval = liveErr.Error()
	} else if deployedBy == "poll" && live < genuine.elapsed {
		lval += ", before the answer came"
	}
	r.rep.check(scn, "its commit goes live (poll 5s configured)", lval, "yes; by poll if the answer is late", liveErr == nil)
	return nil
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

// probeResult is what a probe of a site saw.
type probeResult struct {
	lat      []time.Duration
	errs     int
	firstErr string
}

func (p probeResult) max() time.Duration {
	if len(p.lat) == 0 {
		return 0
	}
	return p.lat[len(p.lat)-1]
}

// probe GETs url from 4 clients, each every 20 ms, until the returned
// function is called; every answer must be 200 with body want.
func probe(url string, want []byte) func() probeResult {
	var (
		stop atomic.Bool
		wg   sync.WaitGroup
		mu   sync.Mutex
		res  probeResult
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				t := time.Now()
				status, body, err := get(url)
				d := time.Since(t)
				mu.Lock()
				res.lat = append(res.lat, d)
				if err != nil || status != 200 || !bytes.Equal(body, want) {
					res.errs++
					if res.firstErr == "" {
						res.firstErr = fmt.Sprintf("status %d, %v", status, err)
					}
				}
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	return func() probeResult {
		stop.Store(true)
		wg.Wait()
		slices.Sort(res.lat)
		return res
	}
}
