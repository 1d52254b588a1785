package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"
)

// latency measures delivery to live for a one-file change on a 2,000-file
// site without a build, and the time to the 202, against git clone --depth 1
// of the same repository in the same run.
func (r *run) latency() error {
	const scn = "5. delivery to live"
	nfiles, rounds := 2000, 20
	if r.short {
		rounds = 3
	}
	tb, err := r.newTestbed("latency", plainSite(nfiles), nil)
	if err != nil {
		return err
	}
	defer tb.caddy.stop()
	dir, repo, s, prev := tb.dir, tb.repo, tb.site, tb.first

	var toAccepted, toLive, clone []time.Duration
	for i := 1; i <= rounds; i++ {
		name := pageName(i)
		marker := fmt.Sprintf("round %d %s", i, uuid())
		sha, err := repo.commitPush(fmt.Sprintf("change %s", name), map[string][]byte{name: page(i, marker)})
		if err != nil {
			return err
		}
		start := time.Now()
		d := r.pushDelivery(s, prev, sha)
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
			if time.Since(start) > 60*time.Second {
				return fmt.Errorf("round %d: %s not live after 60s", i, name)
			}
			time.Sleep(time.Millisecond)
		}
		toLive = append(toLive, time.Since(start))
		prev = sha

		dst := filepath.Join(dir, "clone")
		os.RemoveAll(dst)
		cmd := exec.Command("git", "clone", "--quiet", "--depth", "1", "--branch", benchBranch, repo.url(), dst)
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
	r.rep.info(scn, "site", fmt.Sprintf("%d files of 2 KiB, no build; %d rounds of a one-file change", nfiles, rounds))
	r.rep.info(scn, "delivery → 202: median / p90 / max", triple(toAccepted))
	r.rep.info(scn, "delivery → change served: median / p90 / max", triple(toLive))
	r.rep.info(scn, "`git clone --depth 1` (file://, same repo): median / p90 / max", triple(clone))
	ratio := float64(pct(toLive, 50)) / float64(pct(clone, 50))
	r.rep.info(scn, "delivery → live, median, ÷ clone's median", fmt.Sprintf("%.2f×", ratio))
	return nil
}

func triple(sorted []time.Duration) string {
	return fmt.Sprintf("%v / %v / %v", pct(sorted, 50), pct(sorted, 90), roundDur(sorted[len(sorted)-1]))
}
