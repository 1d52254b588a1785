package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// latency measures, for one-file changes to a 2,000-file site without a
// build, delivery to 202 and delivery to the change served, against git
// clone --depth 1 of the same repository in the same run. Every change
// must be served.
func (r *run) latency() error {
	nfiles, rounds := 2000, 20
	if r.short {
		rounds = 3
	}
	tb, err := r.newTestbed("latency", "", plainSite(nfiles), nil)
	if err != nil {
		return err
	}
	defer tb.caddy.stop()
	s, prev := tb.site, tb.first

	var toAccepted, toLive, clone []time.Duration
	for i := 1; i <= rounds; i++ {
		name, marker := pageName(i), fmt.Sprintf("round %d %s", i, testkit.DeliveryID())
		sha, err := tb.repo.Commit("change "+name, map[string]string{name: page(i, marker)})
		if err != nil {
			return err
		}
		start := time.Now()
		d := r.push(s, prev, sha)
		if d.err != nil {
			return d.err
		}
		toAccepted = append(toAccepted, d.elapsed)
		want := []byte("<p id=marker>" + marker + "</p>")
		for {
			status, body, err := get(s.url("/" + name))
			if err == nil && status == 200 && bytes.Contains(body, want) {
				break
			}
			if time.Since(start) > time.Minute {
				return fmt.Errorf("round %d: %s not served after a minute", i, name)
			}
			time.Sleep(time.Millisecond)
		}
		toLive = append(toLive, time.Since(start))
		prev = sha

		dst := filepath.Join(tb.dir, "clone")
		os.RemoveAll(dst)
		cmd := exec.Command("git", "clone", "--quiet", "--depth", "1", "--branch", benchBranch, s.remote, dst)
		cmd.Env = r.baseEnv()
		t := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("git clone: %w: %s", err, out)
		}
		clone = append(clone, time.Since(t))
	}
	slices.Sort(toAccepted)
	slices.Sort(toLive)
	slices.Sort(clone)
	r.rep.info("site", fmt.Sprintf("%d files of 2 KiB, no build; %d rounds of a one-file change", nfiles, rounds))
	r.rep.check("changes served", fmt.Sprintf("%d of %d", len(toLive), rounds), fmt.Sprint(rounds), len(toLive) == rounds)
	r.rep.info("delivery → 202: median / p90 / max", triple(toAccepted))
	r.rep.info("delivery → change served: median / p90 / max", triple(toLive))
	r.rep.info("`git clone --depth 1` (file://, same repo): median / p90 / max", triple(clone))
	r.rep.info("delivery → live, median, ÷ clone's median", fmt.Sprintf("%.2f×", float64(pct(toLive, 50))/float64(pct(clone, 50))))
	return nil
}
