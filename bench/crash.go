package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// crash kills Caddy with SIGKILL at random moments of deploys and restarts
// it, then fills the disk under a build.
func (r *run) crash() error {
	if err := r.kills(); err != nil {
		return err
	}
	return r.diskFull()
}

func (r *run) kills() error {
	const scn = "4. crashes (kill -9)"
	rounds, posts := 20, 100
	if r.short {
		rounds, posts = 3, 30
	}
	files, extra, what := buildSite(posts, 0)
	tb, err := r.newTestbed("crash", files, extra)
	if err != nil {
		return err
	}
	dir, repo, s, p, prev := tb.dir, tb.repo, tb.site, tb.caddy, tb.first
	defer func() { p.stop() }() // p is the restarted Caddy by then
	ctx := context.Background()

	// One deploy undisturbed, to know how long one takes.
	v := 1
	sha, err := repo.commitPush("version 1", buildVersion(v))
	if err != nil {
		return err
	}
	if d := r.pushDelivery(s, prev, sha); d.err != nil {
		return d.err
	}
	deployTime, err := waitLive(ctx, s.path, sha, 60*time.Second)
	if err != nil {
		return err
	}
	prev = sha

	var (
		phases                        = map[string]int{}
		atOnce, clean, tipLive, procs int
		firstServe, toTip             []time.Duration
		problems                      []string
	)
	problem := func(round int, format string, args ...any) {
		if len(problems) < 5 {
			problems = append(problems, fmt.Sprintf("round %d: ", round)+fmt.Sprintf(format, args...))
		}
	}
	for round := 1; round <= rounds; round++ {
		v++
		sha, err := repo.commitPush(fmt.Sprintf("version %d", v), buildVersion(v))
		if err != nil {
			return err
		}
		if d := r.pushDelivery(s, prev, sha); d.err != nil {
			return d.err
		}
		// A random moment from the answer to a little past a deploy's length.
		time.Sleep(time.Duration(mrand.Int64N(int64(deployTime) * 6 / 5)))
		p.kill()

		// Where the deploy was when it died.
		st, _ := readState(s.path)
		switch {
		case isLive(s.path, sha):
			phases["after the switch"]++
		case st.Building != nil && st.Building.PGID != 0:
			phases["building"]++
		case st.Building != nil:
			phases["checking out"]++
		default:
			phases["fetching"]++
		}
		time.Sleep(200 * time.Millisecond)
		if left := processesUnder(s.path); len(left) > 0 {
			procs += len(left)
			problem(round, "processes left running: %v", left)
		}

		// Restart: the very first answers must be a complete release.
		p, err = r.startCaddy(dir, s, repo, "")
		if err != nil {
			return fmt.Errorf("round %d: %w", round, err)
		}
		if ok, why := completeRelease(s); ok {
			atOnce++
			firstServe = append(firstServe, time.Since(p.started))
		} else {
			problem(round, "first answer after the restart: %s", why)
		}
		t, err := waitLive(ctx, s.path, sha, 60*time.Second)
		if err != nil {
			problem(round, "%v", err)
		} else if served, err := servedVersion(s); err != nil || served != v {
			problem(round, "tip live but serving version %d (%v)", served, err)
		} else {
			tipLive++
			toTip = append(toTip, t)
		}
		// The deploy that put the tip live may still be pruning: the state
		// forgets an old release before its folder is removed. A folder
		// that is being removed goes within moments; a leftover stays.
		half := halfBuilt(s.path, extra)
		for deadline := time.Now().Add(5 * time.Second); len(half) > 0 && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
			half = halfBuilt(s.path, extra)
		}
		if len(half) > 0 {
			problem(round, "releases that are not complete: %v", half)
		} else {
			clean++
		}
		prev = sha
	}

	var ph []string
	for _, k := range []string{"fetching", "checking out", "building", "after the switch"} {
		ph = append(ph, fmt.Sprintf("%d %s", phases[k], k))
	}
	r.rep.info(scn, "site", fmt.Sprintf("%s; a deploy takes %v undisturbed", what, roundDur(deployTime)))
	r.rep.info(scn, "kills, by where the deploy was", strings.Join(ph, ", "))
	r.rep.check(scn, "restarts whose first answer is a complete release", fmt.Sprintf("%d of %d; Caddy started → first complete answer, median %v",
		atOnce, rounds, median(firstServe)), fmt.Sprint(rounds), atOnce == rounds)
	r.rep.check(scn, "half-built folders surviving a restart", fmt.Sprintf("%d rounds of %d with none", clean, rounds), "none", clean == rounds)
	r.rep.check(scn, "build processes outliving the killed Caddy", fmt.Sprint(procs), "0", procs == 0)
	r.rep.check(scn, "restarts after which the tip goes live", fmt.Sprintf("%d of %d; restart → tip live median %v, max %v",
		tipLive, rounds, median(toTip), roundDur(slices.Max(append(toTip, 0)))), fmt.Sprint(rounds), tipLive == rounds)
	if len(problems) > 0 {
		r.rep.info(scn, "problems", strings.Join(problems, "; "))
	}
	return nil
}

// completeRelease GETs / and /version.txt at once and reports whether they
// are one complete release: both there, and of the same version.
func completeRelease(s *site) (bool, string) {
	status, body, err := get(s.url("/"))
	if err != nil || status != 200 {
		return false, fmt.Sprintf("GET /: %d %v", status, err)
	}
	home := versionOf(body)
	served, err := servedVersion(s)
	if err != nil {
		return false, err.Error()
	}
	if home != served {
		return false, fmt.Sprintf("home page of version %d, version.txt %d", home, served)
	}
	return true, ""
}

// halfBuilt returns the folders under path/releases that are not complete
// releases known to the deployer's state.
func halfBuilt(path string, extra []string) []string {
	st, err := readState(path)
	if err != nil {
		return []string{"state.json: " + err.Error()}
	}
	// The live release is complete: the state may list it a moment after
	// current switched to it.
	known := map[string]bool{liveRelease(path): true}
	for _, rel := range st.Releases {
		known[rel.Name] = true
	}
	publish := ""
	for _, e := range extra {
		if p, ok := strings.CutPrefix(e, "publish "); ok {
			publish = p
		}
	}
	var bad []string
	entries, _ := os.ReadDir(filepath.Join(path, "releases"))
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		_, err := os.Stat(filepath.Join(path, "releases", e.Name(), publish, "version.txt"))
		switch {
		case !known[e.Name()]:
			bad = append(bad, e.Name()+" (unknown to the state)")
		case err != nil:
			var names []string
			ls, lerr := os.ReadDir(filepath.Join(path, "releases", e.Name(), publish))
			for _, x := range ls {
				names = append(names, x.Name())
			}
			bad = append(bad, fmt.Sprintf("%s (no version.txt; %s/ holds %v %v)", e.Name(), publish, names, lerr))
		}
	}
	return bad
}

// processesUnder returns the processes whose working directory is inside
// dir: a build or git that outlived its Caddy.
func processesUnder(dir string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		cwd, err := os.Readlink(p + "/cwd")
		if err != nil || (cwd != dir && !strings.HasPrefix(cwd, dir+"/")) {
			continue
		}
		cmd, _ := os.ReadFile(p + "/cmdline")
		out = append(out, filepath.Base(p)+" "+strings.ReplaceAll(strings.TrimSpace(string(cmd)), "\x00", " "))
	}
	return out
}

// diskFull deploys onto a small tmpfs until a build fills it.
func (r *run) diskFull() error {
	const scn = "4. disk full"
	dir, err := r.mkdir("diskfull")
	if err != nil {
		return err
	}
	mnt := filepath.Join(dir, "tmpfs")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return err
	}
	const size = 16 << 20
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", mnt).CombinedOutput(); err != nil {
		r.rep.info(scn, "skipped", fmt.Sprintf("cannot mount a tmpfs (needs root): %v %s", err, strings.TrimSpace(string(out))))
		return nil
	}
	defer func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			r.logf("umount %s: %v %s", mnt, err, out)
			exec.Command("umount", "-l", mnt).Run()
		}
	}()
	repo, err := r.newRepo(dir)
	if err != nil {
		return err
	}
	files, extra, what := buildSite(10, 0)
	c0, err := repo.commitPush("version 0", files)
	if err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	s := &site{path: filepath.Join(mnt, "site"), port: port, extra: extra}
	p, err := r.startCaddy(dir, s, repo, "")
	if err != nil {
		return err
	}
	defer p.stop()
	ctx := context.Background()
	if _, err := waitLive(ctx, s.path, c0, 60*time.Second); err != nil {
		return err
	}
	live := liveRelease(s.path)

	// A commit with a large incompressible file: the fetch and the checkout
	// fit, the build's copy of it does not (with hugo); without a build the
	// checkout itself does not fit.
	bigSize := 6 << 20
	bigName := "static/big.bin"
	if !hugoAvailable() {
		bigSize, bigName = 9<<20, "big.bin"
	}
	big := make([]byte, bigSize)
	rand.Read(big)
	change := buildVersion(1)
	change[bigName] = big
	c1, err := repo.commitPush("version 1, with a large file", change)
	if err != nil {
		return err
	}
	mark := logSize(p.log)
	if d := r.pushDelivery(s, c0, c1); d.err != nil {
		return d.err
	}
	var failure logEntry
	deadline := time.Now().Add(60 * time.Second)
	for failure == nil {
		if f := withMsg(logSince(p.log, mark), "deploy failed"); len(f) > 0 {
			failure = f[0]
			break
		}
		if time.Now().After(deadline) {
			return errors.New("no failed deploy after 60s on a full disk")
		}
		time.Sleep(50 * time.Millisecond)
	}
	msg := failure.str("error")
	if t := failure.str("output_tail"); t != "" {
		msg += " | output tail: " + lastLines(t, 2)
	}
	served, serr := servedVersion(s)
	half := halfBuilt(s.path, extra)

	r.rep.info(scn, "setup", fmt.Sprintf("%s on a %d MiB tmpfs; the next commit adds a %d MiB incompressible file", what, size>>20, bigSize>>20))
	step := "fetch"
	if failure.str("release") != "" {
		step = "build"
	}
	r.rep.check(scn, "the deploy fails cleanly, at the "+step, fmt.Sprintf("%.300s", msg), "error says no space left on device",
		strings.Contains(strings.ToLower(msg), "no space left on device"))
	r.rep.check(scn, "live site untouched", fmt.Sprintf("live release unchanged: %v; serving version %d (%v)", liveRelease(s.path) == live, served, serr),
		"version 0", liveRelease(s.path) == live && serr == nil && served == 0)
	r.rep.check(scn, "failed build's folder removed", fmt.Sprintf("incomplete releases left: %d", len(half)), "0", len(half) == 0)

	// Once the file is gone again, deploys work again.
	change = buildVersion(2)
	change[bigName] = nil
	c2, err := repo.commitPush("version 2, without the large file", change)
	if err != nil {
		return err
	}
	if d := r.pushDelivery(s, c1, c2); d.err != nil {
		return d.err
	}
	_, err = waitLive(ctx, s.path, c2, 60*time.Second)
	served, serr = servedVersion(s)
	r.rep.check(scn, "next commit without the file deploys", fmt.Sprintf("serving version %d (%v)", served, firstErr(err, serr)), "version 2",
		err == nil && serr == nil && served == 2)
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " / ")
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
