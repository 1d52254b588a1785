// Command bench measures a Caddy binary built from this clone, with the
// github_webhook handler deploying from a local bare git repository, under
// load, floods and faults, and prints a table of the figures.
//
// Usage, from the root of a clone:
//
//	go run ./bench [flags] <scenario>... [flags]
//
// Scenarios: serve, flood, burst, crash, latency, handler, or all. Flags:
//
//	-short   a few seconds per scenario (what CI runs so the harness does not rot)
//	-keep    keep the temporary folder (Caddyfiles, Caddy logs, repositories)
//	-wrk     also drive the serving scenario with wrk when it is installed (default true)
//	-v       print Caddy's log path and progress
//
// Everything talks to 127.0.0.1 only and every scenario is bounded in time
// and requests. The exit status is 1 when a scenario could not run or a
// correctness goal failed (a wrong response, a lost push, a half-built
// release, a wake without a valid signature, memory over the bound);
// performance goals are reported, not enforced.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"
)

type scenario struct {
	name string
	what string
	run  func(*run) error
}

var scenarios = []scenario{
	{"serve", "1. serving while deploying", (*run).serve},
	{"flood", "2. forged-delivery flood", (*run).flood},
	{"burst", "3. bursts", (*run).burst},
	{"crash", "4. crashes and disk full", (*run).crash},
	{"latency", "5. delivery to live", (*run).latency},
	{"handler", "6. handler vs go-github", (*run).handlerBench},
}

func main() {
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	short := fs.Bool("short", false, "a few seconds per scenario")
	keep := fs.Bool("keep", false, "keep the temporary folder")
	useWrk := fs.Bool("wrk", true, "also use wrk for throughput when installed")
	verbose := fs.Bool("v", false, "verbose")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: go run ./bench [flags] all|serve|flood|burst|crash|latency|handler... [flags]\n")
		fs.PrintDefaults()
	}
	// Flags may come before or after the scenario names.
	var names []string
	args := os.Args[1:]
	for {
		fs.Parse(args)
		if fs.NArg() == 0 {
			break
		}
		names = append(names, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(names) == 0 {
		fs.Usage()
		os.Exit(2)
	}
	var todo []scenario
	for _, n := range names {
		if n == "all" {
			todo = scenarios
			break
		}
		found := false
		for _, s := range scenarios {
			if s.name == n {
				todo = append(todo, s)
				found = true
			}
		}
		if !found {
			fmt.Fprintf(os.Stderr, "bench: unknown scenario %q\n", n)
			fs.Usage()
			os.Exit(2)
		}
	}

	r, err := newRun(*short, *verbose, *useWrk)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	start := time.Now()
	for _, s := range todo {
		r.logf("%s (%s)", s.what, s.name)
		t := time.Now()
		if err := s.run(r); err != nil {
			r.rep.fail(s.what, err)
			r.logf("%s: %v", s.name, err)
		}
		r.logf("%s took %v", s.name, time.Since(t).Round(100*time.Millisecond))
	}
	mode := "full"
	if *short {
		mode = "short"
	}
	fmt.Printf("\n%s\n\nMode: %s, %s in all. Command: `go run ./bench %s`\n\n",
		machine(r), mode, time.Since(start).Round(time.Second), strings.Join(os.Args[1:], " "))
	r.rep.print(os.Stdout)
	if *keep {
		r.logf("kept %s", r.root)
	} else {
		os.RemoveAll(r.root)
	}
	if r.rep.failed() {
		os.Exit(1)
	}
}

func newRun(short, verbose, useWrk bool) (*run, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return nil, fmt.Errorf("finding the module: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return nil, fmt.Errorf("run from inside the clone")
	}
	root, err := os.MkdirTemp("", "caddy-webhook-bench-")
	if err != nil {
		return nil, err
	}
	r := &run{
		short:   short,
		verbose: verbose,
		wrk:     useWrk,
		root:    root,
		modRoot: strings.TrimSuffix(gomod, "/go.mod"),
		secret:  "bench-" + uuid(),
		rep:     &report{},
	}
	if useWrk {
		if _, err := exec.LookPath("wrk"); err != nil {
			r.logf("wrk not found: the serving scenario uses the Go client only")
			r.wrk = false
		}
	}
	if err := os.MkdirAll(root+"/home", 0o755); err != nil {
		return nil, err
	}
	r.logf("building ./cmd/caddy")
	if err := r.buildCaddy(); err != nil {
		os.RemoveAll(root)
		return nil, err
	}
	return r, nil
}

// ---- the report ----

type row struct {
	scenario, figure, value, goal, met string
}

type report struct {
	mu   sync.Mutex
	rows []row
	bad  bool
}

// info adds a figure without a goal.
func (p *report) info(scenario, figure, value string) {
	p.add(row{scenario, figure, value, "", ""})
}

// check adds a figure with a correctness goal: a miss fails the run.
func (p *report) check(scenario, figure, value, goal string, ok bool) {
	met := "yes"
	if !ok {
		met = "**no**"
		p.mu.Lock()
		p.bad = true
		p.mu.Unlock()
	}
	p.add(row{scenario, figure, value, goal, met})
}

// perf adds a figure with a performance goal: reported, never fatal.
func (p *report) perf(scenario, figure, value, goal string, ok bool) {
	met := "yes"
	if !ok {
		met = "**no**"
	}
	p.add(row{scenario, figure, value, goal, met})
}

// fail records a scenario that could not run to its end.
func (p *report) fail(scenario string, err error) {
	p.mu.Lock()
	p.bad = true
	p.mu.Unlock()
	p.add(row{scenario, "**did not complete**", strings.ReplaceAll(err.Error(), "\n", " "), "", "**no**"})
}

func (p *report) add(r row) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rows = append(p.rows, r)
}

func (p *report) failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bad
}

// print writes the table as Markdown, which reads well in a terminal too.
func (p *report) print(w *os.File) {
	p.mu.Lock()
	defer p.mu.Unlock()
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

func esc(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// machine describes where the figures come from.
func machine(r *run) string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		fmt.Sscanf(strings.SplitN(string(b), "\n", 2)[0], "MemTotal: %d kB", &kb)
		mem = fmt.Sprintf(", %.0f GiB RAM", float64(kb)/(1<<20))
	}
	kernel := ""
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = ", Linux " + strings.TrimSpace(string(b))
	}
	version := func(name string, args ...string) string {
		out, _ := exec.Command(name, args...).CombinedOutput() // wrk --version exits 1
		if len(out) == 0 {
			return name + " n/a"
		}
		line := strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
		return line
	}
	caddyV := strings.Fields(version(r.caddy, "version"))
	cv := "caddy n/a"
	if len(caddyV) > 0 {
		cv = "Caddy " + caddyV[0]
	}
	wrkV := "wrk n/a"
	if f := strings.Fields(version("wrk", "--version")); len(f) > 1 && f[0] == "wrk" {
		wrkV = "wrk " + f[1]
	}
	hugoV := "hugo n/a"
	if f := strings.Fields(version("hugo", "version")); len(f) > 1 {
		hugoV = "hugo " + strings.SplitN(f[1], "+", 2)[0]
	}
	load := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			load = fmt.Sprintf(" Load average at the end (1, 5, 15 min): %s %s %s.", f[0], f[1], f[2])
		}
	}
	return fmt.Sprintf("Machine: %s, %d cores%s%s; %s, %s, %s, %s, %s.%s",
		cpu, runtime.NumCPU(), mem, kernel, runtime.Version(), cv, version("git", "--version"), wrkV, hugoV, load)
}
