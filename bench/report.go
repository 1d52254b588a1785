package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
)

// report is the table the run prints: one row per figure.
type report struct {
	short    bool   // performance goals are left out
	scenario string // the scenario rows are added for
	mu       sync.Mutex
	rows     []row
	bad      bool
}

type row struct{ scenario, figure, value, goal, met string }

// info adds a figure without a goal.
func (p *report) info(figure, value string) { p.add(row{p.scenario, figure, value, "", ""}, false) }

// check adds a figure with a correctness goal: a miss fails the run.
func (p *report) check(figure, value, goal string, ok bool) {
	p.add(row{p.scenario, figure, value, goal, met(ok)}, !ok)
}

// perf adds a figure with a performance goal, reported and never fatal; the
// short run leaves it out.
func (p *report) perf(figure, value, goal string, ok bool) {
	if !p.short {
		p.add(row{p.scenario, figure, value, goal, met(ok)}, false)
	}
}

// fail records that the scenario could not run to its end.
func (p *report) fail(err error) {
	p.add(row{p.scenario, "**did not complete**", strings.ReplaceAll(err.Error(), "\n", " "), "", "**no**"}, true)
}

func met(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func (p *report) add(r row, bad bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rows = append(p.rows, r)
	p.bad = p.bad || bad
}

func (p *report) failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bad
}

// print writes the table as Markdown, which reads well in a terminal too.
func (p *report) print(w io.Writer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	esc := strings.NewReplacer("|", `\|`).Replace
	fmt.Fprintln(w, "| scenario | figure | value | goal | met |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- |")
	last := ""
	for _, r := range p.rows {
		s := r.scenario
		if s == last {
			s = ""
		}
		last = r.scenario
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", s, esc(r.figure), esc(r.value), esc(r.goal), r.met)
	}
}

// machine describes where the figures come from: CPU, memory, kernel, the
// versions of the tools, and the load average.
func machine(caddy string) string {
	procLine := func(file, key string) string {
		b, _ := os.ReadFile(file)
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == key {
				return strings.TrimSpace(v)
			}
		}
		return "unknown"
	}
	first := func(name string, args ...string) []string {
		out, _ := exec.Command(name, args...).CombinedOutput() // wrk --version exits 1
		line, _, _ := strings.Cut(string(out), "\n")
		return append(strings.Fields(line), "n/a", "n/a")
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	load, _ := os.ReadFile("/proc/loadavg")
	return fmt.Sprintf("Machine: %s, %d cores, %s RAM, Linux %s; %s, Caddy %s, git %s, wrk %s, hugo %s. Load average at the end (1, 5, 15 min): %s.",
		procLine("/proc/cpuinfo", "model name"), runtime.NumCPU(), procLine("/proc/meminfo", "MemTotal"),
		strings.TrimSpace(string(kernel)), runtime.Version(), first(caddy, "version")[0], first("git", "--version")[2],
		first("wrk", "--version")[1], strings.SplitN(first("hugo", "version")[1], "+", 2)[0],
		strings.Join(append(strings.Fields(string(load)), "", "", "")[:3], " "))
}
