package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
)

// phases are where a deploy can be when Caddy is killed, in order.
var phases = []string{"fetching", "checking out", "building", "after the switch"}

// crash kills Caddy with SIGKILL during deploys and restarts it. Round i
// kills it once the deploy has reached phases[i%4] (or, when that phase
// was too short to be seen, a later one), so that even the short run's four
// rounds kill it in each. After each restart: the first answers are one
// complete release, no half-built folder and no build process is left, and
// the tip goes live.
func (r *run) crash() error {
	rounds, posts := 20, 100
	if r.short {
		rounds, posts = 4, 30
	}
	files, extra, what := buildSite(posts)
	tb, err := r.newTestbed("crash", "", files, extra)
	if err != nil {
		return err
	}
	s, p, prev := tb.site, tb.caddy, tb.first
	defer func() { p.stop() }() // p is the restarted Caddy by then

	var (
		killedIn                      = map[string]int{}
		atOnce, clean, tipLive, procs int
		resets                        []string // connection errors before the first answer
		firstServe, toTip             []time.Duration
		problems                      []string
	)
	problem := func(round int, format string, args ...any) {
		if len(problems) < 5 {
			problems = append(problems, fmt.Sprintf("round %d: ", round)+fmt.Sprintf(format, args...))
		}
	}
	for round := 1; round <= rounds; round++ {
		sha, err := tb.repo.Commit(fmt.Sprintf("version %d", round), buildVersion(round))
		if err != nil {
			return err
		}
		if d := r.push(s, prev, sha); d.err != nil {
			return d.err
		}
		phase := waitPhase(s.path, sha, (round-1)%len(phases))
		p.kill()
		killedIn[phases[phase]]++

		// The build's processes die with Caddy (parent-death signal), not
		// at the very same moment.
		var left []string
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if left = processesUnder(s.path); len(left) == 0 || time.Now().After(deadline) {
				break
			}
		}
		if len(left) > 0 {
			procs += len(left)
			problem(round, "processes left running 10s after the kill: %v", left)
		}

		// Restart: the very first answers must be a complete release.
		if p, err = r.startCaddy(tb.dir, s); err != nil {
			return fmt.Errorf("round %d: %w", round, err)
		}
		// A connection refused or reset is not an answer: try again, a
		// few times, and report it apart. What must never happen is an
		// answer from an incomplete release.
		why := completeRelease(s)
		for try := 0; try < 5 && strings.HasPrefix(why, "GET /: 0 "); try++ {
			resets = append(resets, fmt.Sprintf("round %d (%s): %s", round, phases[phase], why))
			time.Sleep(50 * time.Millisecond)
			why = completeRelease(s)
		}
		if why == "" {
			atOnce++
			firstServe = append(firstServe, time.Since(p.Started))
		} else {
			problem(round, "first answer after the restart: %s", why)
		}
		t, err := waitLive(s.path, sha, time.Minute)
		if err != nil {
			problem(round, "%v", err)
		} else if served, err := servedVersion(s); err != nil || served != round {
			problem(round, "tip live but serving version %d (%v)", served, err)
		} else {
			tipLive++
			toTip = append(toTip, t)
		}
		// The deploy that put the tip live may still be pruning (the state
		// forgets an old release before its folder is removed): once the
		// worker has looked at the tip, what is left is left.
		if _, err := p.waitStatus("the worker's look at the tip", time.Minute, func(st deployer.Status) bool {
			return st.Checked != nil && st.Checked.Commit == sha && st.Running == nil
		}); err != nil {
			problem(round, "%v", err)
		}
		if half := halfBuilt(s.path, extra); len(half) > 0 {
			problem(round, "releases that are not complete: %v", half)
		} else {
			clean++
		}
		prev = sha
	}

	var ph []string
	for _, k := range phases {
		ph = append(ph, fmt.Sprintf("%d %s", killedIn[k], k))
	}
	r.rep.info("site", what)
	r.rep.info("kills, by where the deploy was", strings.Join(ph, ", "))
	r.rep.check("restarts whose first answer is a complete release", fmt.Sprintf("%d of %d; Caddy started → first complete answer, median %v",
		atOnce, rounds, median(firstServe)), fmt.Sprint(rounds), atOnce == rounds)
	r.rep.check("half-built folders surviving a restart", fmt.Sprintf("%d rounds of %d with none", clean, rounds), "none", clean == rounds)
	r.rep.check("build processes outliving the killed Caddy", fmt.Sprint(procs), "0", procs == 0)
	r.rep.check("restarts after which the tip goes live", fmt.Sprintf("%d of %d; restart → tip live median %v, max %v",
		tipLive, rounds, median(toTip), roundDur(slices.Max(append(toTip, 0)))), fmt.Sprint(rounds), tipLive == rounds)
	r.rep.info("connection errors before the first answer after a restart", fmt.Sprintf("%d %v", len(resets), resets))
	if len(problems) > 0 {
		r.rep.info("problems", strings.Join(problems, "; "))
	}
	return nil
}

// deployState is the part of path/state.json the harness reads.
type deployState struct {
	Releases []struct{ Name string } `json:"releases"`
	Building *struct {
		PGID int `json:"pgid"`
	} `json:"building"`
}

func readState(path string) (deployState, error) {
	var st deployState
	b, err := os.ReadFile(filepath.Join(path, "state.json"))
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// phaseOf returns the index in phases of where the deploy of commit is,
// as path shows it.
func phaseOf(path, commit string) int {
	st, _ := readState(path)
	switch {
	case isLive(path, commit):
		return 3
	case st.Building != nil && st.Building.PGID != 0:
		return 2
	case st.Building != nil:
		return 1
	}
	return 0
}

// waitPhase waits until the deploy of commit has reached the phase want or
// a later one, for at most a minute, and returns the phase it saw.
func waitPhase(path, commit string, want int) int {
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
		if got := phaseOf(path, commit); got >= want || time.Now().After(deadline) {
			return got
		}
	}
}

// completeRelease GETs / and /version.txt at once and returns why they are
// not one complete release (both there, and of the same version), or "".
func completeRelease(s *site) string {
	status, body, err := get(s.url("/"))
	if err != nil || status != 200 {
		return fmt.Sprintf("GET /: %d %v", status, err)
	}
	served, err := servedVersion(s)
	if err != nil {
		return err.Error()
	}
	if home := versionOf(body); home != served {
		return fmt.Sprintf("home page of version %d, version.txt %d", home, served)
	}
	return ""
}

// halfBuilt returns the folders under path/releases that are not complete
// releases known to the deployer's state.
func halfBuilt(path string, extra []string) []string {
	st, err := readState(path)
	if err != nil {
		return []string{"state.json: " + err.Error()}
	}
	known := map[string]bool{}
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
			bad = append(bad, e.Name()+" (no "+filepath.Join(publish, "version.txt")+")")
		}
	}
	return bad
}
