package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
)

// cost measures what a one-file change without a build costs, side by side
// on a site of 2,000 and one of 20,000 files: delivery to live and to the
// worker idle again, the CPU time of Caddy and of every process it starts
// (the long-lived cat-file included), and how many git processes a deploy
// starts; and a shallow clone of each repository, timed and measured the
// same way, in the same run. The deploys measured follow warm-up deploys,
// so that each reuses the spare release, as every deploy but the first few
// does.
func (r *run) cost() error {
	sizes, warm, rounds := []int{2000, 20000}, 4, 8
	if r.short {
		sizes, rounds = []int{100, 300}, 2
	}
	type result struct {
		files                 int
		live, idle, cpu       []time.Duration
		cpuSelf               []time.Duration // Caddy's own share of cpu
		clone, cloneCPU       []time.Duration
		fetch, fetchCPU       []time.Duration // the floor: the deployer's fetch alone
		gitPerDeploy, maxProc int
	}
	var res []result
	for _, n := range sizes {
		r.logf("cost: %d files: making the site", n)
		tb, err := r.newTestbed(fmt.Sprintf("cost-%d", n), "", plainSite(n), nil)
		if err != nil {
			return err
		}
		res = append(res, result{files: n})
		out := &res[len(res)-1]
		err = func() error {
			defer func() { tb.caddy.stop() }()
			markers := map[int]string{}
			commits, err := r.stage(tb.repo, tb.first, warm+rounds+3, func(i int) map[string]string {
				markers[i] = fmt.Sprintf("change %d of the %d-file site", i, n)
				return map[string]string{pageName(1 + i%(n-1)): page(i, markers[i])}
			})
			if err != nil {
				return err
			}
			defer commits.close()
			// deploy moves the branch to the i-th commit, delivers it, and
			// measures it.
			var self time.Duration // Caddy's own CPU in the last deploy
			deploy := func(i int) (live, idle, cpu time.Duration, err error) {
				if err := commits.move(i); err != nil {
					return 0, 0, 0, err
				}
				c0, s0 := treeCPU(tb.caddy.pid())
				start := time.Now()
				if d := r.push(tb.site, commits.shas[i-1], commits.shas[i]); d.err != nil {
					return 0, 0, 0, d.err
				}
				for !isLive(tb.site.path, commits.shas[i]) {
					if time.Since(start) > time.Minute {
						return 0, 0, 0, fmt.Errorf("commit %.12s not live after a minute", commits.shas[i])
					}
					time.Sleep(time.Millisecond)
				}
				live = time.Since(start)
				if _, err := waitIdle(tb.caddy, commits.shas[i]); err != nil {
					return 0, 0, 0, err
				}
				idle = time.Since(start)
				c1, s1 := treeCPU(tb.caddy.pid())
				cpu, self = c1-c0, s1-s0
				name := pageName(1 + i%(n-1))
				status, body, err := get(tb.site.url("/" + name))
				if err != nil || status != 200 || !bytes.Contains(body, []byte(markers[i])) {
					return 0, 0, 0, fmt.Errorf("commit %.12s live, but %s is not its version (%d, %v)", commits.shas[i], name, status, err)
				}
				return live, idle, cpu, nil
			}
			r.logf("cost: %d files: %d warm-up deploys", n, warm)
			for i := 1; i <= warm; i++ {
				if _, _, _, err := deploy(i); err != nil {
					return err
				}
			}
			floor := filepath.Join(tb.dir, "floor.git")
			if _, _, err := r.floorFetch(tb.site.remote, floor); err != nil {
				return err
			}
			r.logf("cost: %d files: %d deploys measured, each with a shallow clone", n, rounds)
			for i := warm + 1; i <= warm+rounds; i++ {
				live, idle, cpu, err := deploy(i)
				if err != nil {
					return err
				}
				out.live, out.idle, out.cpu = append(out.live, live), append(out.idle, idle), append(out.cpu, cpu)
				out.cpuSelf = append(out.cpuSelf, self)
				took, cpuClone, err := r.shallowClone(tb.site.remote, filepath.Join(tb.dir, "clone"))
				if err != nil {
					return err
				}
				out.clone, out.cloneCPU = append(out.clone, took), append(out.cloneCPU, cpuClone)
				took, cpuFetch, err := r.floorFetch(tb.site.remote, floor)
				if err != nil {
					return err
				}
				out.fetch, out.fetchCPU = append(out.fetch, took), append(out.fetchCPU, cpuFetch)
			}

			// Git processes per deploy: Caddy again on the same folder, with
			// a git on PATH that logs each start. (Not during the timed
			// deploys: its shell would weigh on them.)
			tb.caddy.stop()
			shim, logFile, err := gitShim(tb.dir)
			if err != nil {
				return err
			}
			tb.site.env = []string{"PATH=" + shim + string(os.PathListSeparator) + os.Getenv("PATH")}
			if tb.caddy, err = r.startCaddy(tb.dir, tb.site); err != nil {
				return err
			}
			if _, err := waitIdle(tb.caddy, commits.shas[warm+rounds]); err != nil {
				return err
			}
			for i := warm + rounds + 1; i <= warm+rounds+3; i++ {
				before := countLines(logFile, tb.site.path)
				if _, _, _, err := deploy(i); err != nil {
					return err
				}
				k := countLines(logFile, tb.site.path) - before
				out.gitPerDeploy += k
				out.maxProc = max(out.maxProc, k)
			}
			out.gitPerDeploy /= 3
			return nil
		}()
		if err != nil {
			return err
		}
	}

	small, big := res[0], res[1]
	ms := func(d time.Duration) string { return roundDur(d).String() }
	r.rep.info("sites", fmt.Sprintf("%d and %d files of 2 KiB, no build, keep 3; %d one-file changes each, after %d warm-up deploys; medians",
		small.files, big.files, rounds, warm))
	both := func(a, b []time.Duration) string {
		return fmt.Sprintf("%s / %s (%.2f×)", ms(median(a)), ms(median(b)), float64(median(b))/float64(median(a)))
	}
	within := func(a, b []time.Duration, slack time.Duration) bool {
		return median(b) <= max(median(a)*3/2, median(a)+slack)
	}
	r.rep.perf(fmt.Sprintf("delivery → live, %d / %d files", small.files, big.files), both(small.live, big.live),
		"≤ 1.5× (or +50 ms)", within(small.live, big.live, 50*time.Millisecond))
	r.rep.perf(fmt.Sprintf("delivery → worker idle, %d / %d files", small.files, big.files), both(small.idle, big.idle),
		"≤ 1.5× (or +50 ms)", within(small.idle, big.idle, 50*time.Millisecond))
	r.rep.info(fmt.Sprintf("`git clone --depth 1` (file://), %d / %d files: time; CPU", small.files, big.files),
		fmt.Sprintf("%s / %s; %s / %s", ms(median(small.clone)), ms(median(big.clone)), ms(median(small.cloneCPU)), ms(median(big.cloneCPU))))
	r.rep.info(fmt.Sprintf("the floor: the deployer's `git fetch --depth 1` of the change alone, %d / %d files: time; CPU", small.files, big.files),
		fmt.Sprintf("%s / %s; %s / %s", ms(median(small.fetch)), ms(median(big.fetch)), ms(median(small.fetchCPU)), ms(median(big.fetchCPU))))
	liveRatio := float64(median(small.live)) / float64(median(small.clone))
	r.rep.perf(fmt.Sprintf("delivery → live ÷ shallow clone, %d files", small.files), fmt.Sprintf("%.2f× (%.2f× at %d files)",
		liveRatio, float64(median(big.live))/float64(median(big.clone)), big.files), "≤ 0.25×", liveRatio <= 0.25)
	r.rep.perf(fmt.Sprintf("CPU per deploy (Caddy, git, cat-file), %d / %d files", small.files, big.files), both(small.cpu, big.cpu),
		"≤ 1.5× + 40 ms", median(big.cpu) <= median(small.cpu)*3/2+40*time.Millisecond)
	r.rep.info("… of which Caddy itself (the rest: git, the fetch's transfer from a local remote included)",
		fmt.Sprintf("%s / %s", ms(median(small.cpuSelf)), ms(median(big.cpuSelf))))
	cpuRatio := float64(median(small.cpu)) / float64(median(small.cloneCPU))
	r.rep.perf(fmt.Sprintf("CPU per deploy ÷ shallow clone's CPU, %d files", small.files), fmt.Sprintf("%.2f× (%.2f× at %d files)",
		cpuRatio, float64(median(big.cpu))/float64(median(big.cloneCPU)), big.files), "≤ 0.3×", cpuRatio <= 0.3)
	r.rep.check("git processes per deploy (most in one deploy), both sites",
		fmt.Sprintf("%d, %d (%d, %d)", small.gitPerDeploy, big.gitPerDeploy, small.maxProc, big.maxProc), "≤ 3",
		max(small.maxProc, big.maxProc) <= 3)
	return nil
}

// waitIdle polls the admin API until the worker has handled commit and runs
// nothing.
func waitIdle(p *caddyProc, commit string) (deployer.Status, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := p.status()
		if err == nil && st.Running == nil && st.Checked != nil && st.Checked.Commit == commit {
			return st, nil
		}
		if time.Now().After(deadline) {
			return st, fmt.Errorf("worker not idle on %.12s after a minute: %v (status %+v)", commit, err, st)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// The clone and the floor run at nice 10, as the deployer's git does, so
// that on a busy machine the ratios compare work, not priority.

// shallowClone times `git clone --depth 1` of remote into dst, and returns
// its CPU time and that of the processes it started (wait4 counts those it
// waited for).
func (r *run) shallowClone(remote, dst string) (took, cpu time.Duration, err error) {
	os.RemoveAll(dst)
	cmd := exec.Command("nice", "-n", "10", "git", "clone", "--quiet", "--depth", "1", "--branch", benchBranch, remote, dst)
	cmd.Env = r.baseEnv()
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("git clone: %w: %s", err, out)
	}
	took = time.Since(start)
	return took, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

// floorFetch runs, in the bare repository dst (made if need be), the fetch
// the deployer runs, with its configuration for objects, and returns its
// time and CPU (with the processes it started: the local remote's side
// too).
func (r *run) floorFetch(remote, dst string) (took, cpu time.Duration, err error) {
	if _, err := os.Stat(dst); err != nil {
		if out, err := exec.Command("git", "init", "--quiet", "--bare", dst).CombinedOutput(); err != nil {
			return 0, 0, fmt.Errorf("git init: %w: %s", err, out)
		}
	}
	cmd := exec.Command("nice", "-n", "10", "git", "-c", "fetch.fsckObjects=true", "-c", "transfer.fsckObjects=true", "-c", "gc.auto=0",
		"-c", "maintenance.auto=false", "fetch", "--quiet", "--no-write-fetch-head", "--prune", "--force",
		"--no-auto-maintenance", "--depth=1", "--", remote, "+refs/heads/"+benchBranch+":refs/remotes/origin/"+benchBranch)
	cmd.Dir, cmd.Env = dst, r.baseEnv()
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("git fetch: %w: %s", err, out)
	}
	return time.Since(start), cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

// treeCPU returns the CPU time of process pid, of its children that ended
// (git commands, counted with what they waited for), and of its children
// that still run (the deployer's cat-file); and that of pid alone.
func treeCPU(pid int) (total, self time.Duration) {
	self, children, _ := procCPU(pid)
	total = self + children
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range procs {
		if s, c, ppid := procCPU(atoi(filepath.Base(filepath.Dir(p)))); ppid == pid {
			total += s + c
		}
	}
	return total, self
}

// procCPU reads utime+stime and cutime+cstime of a process, and its parent.
func procCPU(pid int) (self, children time.Duration, ppid int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 15 {
		return 0, 0, 0
	}
	return ticks(f[11]) + ticks(f[12]), ticks(f[13]) + ticks(f[14]), atoi(f[1])
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// gitShim writes, in dir, a git that appends its working folder and
// arguments to a log and runs the real git; it returns the folder to put
// first on PATH and the log.
func gitShim(dir string) (bin, logFile string, err error) {
	real, err := exec.LookPath("git")
	if err != nil {
		return "", "", err
	}
	bin = filepath.Join(dir, "shim")
	logFile = filepath.Join(dir, "git-argv.log")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", "", err
	}
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
	script := "#!/bin/sh\nprintf '%s\\n' \"$PWD $*\" >> " + q(logFile) + "\nexec " + q(real) + " \"$@\"\n"
	return bin, logFile, os.WriteFile(filepath.Join(bin, "git"), []byte(script), 0o755)
}

// countLines counts the lines of the shim's log of git commands run in the
// deployer's folder under path.
func countLines(logFile, path string) int {
	b, _ := os.ReadFile(logFile)
	n := 0
	for _, line := range slices.Collect(strings.Lines(string(b))) {
		if strings.HasPrefix(line, path+"/") || strings.HasPrefix(line, path+" ") {
			n++
		}
	}
	return n
}
