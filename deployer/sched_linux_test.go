package deployer

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// schedPolicy returns the "policy" of /proc/<pid>/sched (5 is SCHED_IDLE).
func schedPolicy(t *testing.T, sched string) string {
	t.Helper()
	for line := range strings.Lines(sched) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "policy" {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no policy in sched:\n%s", sched)
	return ""
}

// Deploy processes run where the scheduler gives them only what serving
// leaves: a real git started as the deployer starts its long-lived
// cat-file, read back from /proc and ioprio_get, and a real build command
// through a whole deploy, whose own children (cat, ionice, nice) inherit
// the SCHED_IDLE class, the idle I/O class and nice 10.
func TestDeployProcessesRunAtIdleClass(t *testing.T) {
	t.Run("git", func(t *testing.T) {
		r := newRemote(t)
		r.commit(map[string]string{"index.html": "hello"})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		p, err := startProcess(ctx, r.bare, os.Environ(), nil, "git", "cat-file", "--batch")
		if err != nil {
			t.Fatal(err)
		}
		defer p.Wait()
		pid := p.cmd.Process.Pid
		sched, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/sched")
		if err != nil {
			t.Fatal(err)
		}
		if got := schedPolicy(t, string(sched)); got != "5" {
			t.Errorf("git cat-file runs with policy %s, want 5 (SCHED_IDLE)", got)
		}
		prio, _, errno := unix.Syscall(unix.SYS_IOPRIO_GET, ioprioWhoProcess, uintptr(pid), 0)
		if errno != 0 {
			t.Fatalf("ioprio_get: %v", errno)
		}
		if class := prio >> ioprioClassShift; class != ioprioClassIdle {
			t.Errorf("git cat-file has I/O class %d, want %d (idle)", class, ioprioClassIdle)
		}
	})
	t.Run("build", func(t *testing.T) {
		r := newRemote(t)
		tip := r.commit(map[string]string{"index.html": "hello"})
		tg := start(t, Config{Remote: r.bare, Repo: "octocat/blog", Commands: [][]string{
			{"sh", "-c", `cat /proc/self/sched > sched.txt; ionice > ionice.txt; nice > nice.txt`},
		}})
		tg.waitLive(tip)
		if got := schedPolicy(t, readCurrent(t, tg.path, "sched.txt")); got != "5" {
			t.Errorf("the build's child runs with policy %s, want 5 (SCHED_IDLE)", got)
		}
		if got := strings.TrimSpace(readCurrent(t, tg.path, "ionice.txt")); got != "idle" {
			t.Errorf("the build's child has I/O class %q, want idle", got)
		}
		if got := strings.TrimSpace(readCurrent(t, tg.path, "nice.txt")); got != "10" {
			t.Errorf("the build's child runs at nice %s, want 10", got)
		}
	})
}
