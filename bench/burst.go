package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// buildSite returns the files of version v of the site the scenarios that
// build use (a Hugo site of n posts, built with hugo --minify), and the
// github_webhook lines for it. Without hugo it is a site without a build.
func buildSite(n, v int) (files map[string][]byte, extra []string, what string) {
	if hugoAvailable() {
		return hugoSite(n, v), []string{"command hugo --minify", "publish public"},
			fmt.Sprintf("Hugo site of %d posts, `hugo --minify`", n)
	}
	files = plainSite(n)
	files["index.html"] = plainIndex(v)
	files["version.txt"] = []byte(strconv.Itoa(v) + "\n")
	return files, nil, fmt.Sprintf("%d files, no build (hugo not installed)", n)
}

// buildVersion returns the files that change in version v of buildSite.
func buildVersion(v int) map[string][]byte {
	if hugoAvailable() {
		return hugoVersion(v)
	}
	return map[string][]byte{"index.html": plainIndex(v), "version.txt": []byte(strconv.Itoa(v) + "\n")}
}

// servedVersion returns the version /version.txt of a site says, or an error.
func servedVersion(s *site) (int, error) {
	status, body, err := get(s.url("/version.txt"))
	if err != nil {
		return -1, err
	}
	if status != http.StatusOK {
		return -1, fmt.Errorf("GET /version.txt: %d", status)
	}
	return strconv.Atoi(strings.TrimSpace(string(body)))
}

// burst sends 200 genuine deliveries for 200 commits within 5 s.
func (r *run) burst() error {
	const scn = "3. bursts"
	n, window, posts := 200, 5*time.Second, 20
	if r.short {
		n, window = 40, time.Second
	}
	files, extra, what := buildSite(posts, 0)
	tb, err := r.newTestbed("burst", files, extra)
	if err != nil {
		return err
	}
	defer tb.caddy.stop()
	repo, s, p, c0 := tb.repo, tb.site, tb.caddy, tb.first
	ctx := context.Background()

	// The commits exist before the burst; each step of the burst moves the
	// remote branch to the next one (git update-ref: a push without the
	// transfer) and delivers it.
	r.logf("burst: preparing %d commits", n)
	shas, err := repo.stage(c0, n, buildVersion)
	if err != nil {
		return err
	}

	refs, err := repo.refUpdater()
	if err != nil {
		return err
	}
	defer refs.close()
	mark := logSize(p.log)
	results := make([]delivery, n+1)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 1; i <= n; i++ {
		if err := refs.set("refs/heads/"+benchBranch, shas[i]); err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = deliver(s.url(hookPath), r.secret, pushPayload(shas[i-1], shas[i]))
		}()
		time.Sleep(time.Until(start.Add(window * time.Duration(i) / time.Duration(n))))
	}
	wg.Wait()
	sentIn := time.Since(start)
	lastSent := time.Now()
	_, liveErr := waitLive(ctx, s.path, shas[n], 120*time.Second)
	toLive := time.Since(lastSent)
	served, serveErr := servedVersion(s)
	time.Sleep(500 * time.Millisecond) // a deploy that still follows would show now
	entries := logSince(p.log, mark)

	accepted := 0
	var answers []time.Duration
	var other []string
	for _, d := range results[1:] {
		answers = append(answers, d.elapsed)
		if d.err == nil && d.status == http.StatusAccepted {
			accepted++
		} else if len(other) < 3 {
			other = append(other, fmt.Sprintf("%d %v %s", d.status, d.err, d.body))
		}
	}
	slices.Sort(answers)
	builds := len(withMsg(entries, "deploying"))
	failed := len(withMsg(entries, "deploy failed"))
	r.rep.info(scn, "site", what)
	r.rep.check(scn, "deliveries answered 202", fmt.Sprintf("%d of %d, sent in %v; answer p50 / max %v / %v %s",
		accepted, n, sentIn.Round(10*time.Millisecond), pct(answers, 50), roundDur(answers[len(answers)-1]), strings.Join(other, "; ")),
		fmt.Sprintf("%d", n), accepted == n)
	r.rep.perf(scn, "builds (deploys started)", fmt.Sprintf("%d for %d commits; %d failed", builds, n, failed), "few", builds <= n/4 && failed == 0)
	lval := fmt.Sprintf("yes, %v after the last delivery", roundDur(toLive))
	if liveErr != nil {
		lval = liveErr.Error()
	}
	r.rep.check(scn, "last commit live", lval, "yes", liveErr == nil)
	sval := fmt.Sprintf("version %d", served)
	if serveErr != nil {
		sval = serveErr.Error()
	}
	r.rep.check(scn, "site serves the last version", sval, fmt.Sprintf("version %d", n), serveErr == nil && served == n)
	return nil
}

// stage makes n commits after first, the i-th holding files(i), and pushes
// them to a side ref only, so that the branch can later move to each in turn
// without a transfer (refUpdater). It returns first and the n commits.
func (s *siteRepo) stage(first string, n int, files func(i int) map[string][]byte) ([]string, error) {
	shas := []string{first}
	for i := 1; i <= n; i++ {
		sha, err := s.commit(fmt.Sprintf("version %d", i), files(i))
		if err != nil {
			return nil, err
		}
		shas = append(shas, sha)
	}
	if _, err := s.git(s.work, "push", "--quiet", "origin", "HEAD:refs/bench/staging"); err != nil {
		return nil, err
	}
	return shas, nil
}

// refUpdater moves refs of the bare repository through one long-running
// git update-ref --stdin, one transaction per update: no process to start
// per push.
type refUpdater struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

func (s *siteRepo) refUpdater() (*refUpdater, error) {
	cmd := exec.Command("git", "update-ref", "--stdin")
	cmd.Dir = s.bare
	cmd.Env = s.r.baseEnv()
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &refUpdater{cmd: cmd, in: in, out: bufio.NewReader(out)}, nil
}

// set points ref at sha, committed when it returns.
func (u *refUpdater) set(ref, sha string) error {
	if _, err := fmt.Fprintf(u.in, "start\nupdate %s %s\ncommit\n", ref, sha); err != nil {
		return fmt.Errorf("git update-ref: %w", err)
	}
	for {
		line, err := u.out.ReadString('\n')
		if err != nil {
			return fmt.Errorf("git update-ref: %w", err)
		}
		if strings.TrimSpace(line) == "commit: ok" {
			return nil
		}
	}
}

func (u *refUpdater) close() {
	u.in.Close()
	u.cmd.Wait()
}
