// Command bench measures a Caddy binary built from this clone, deploying a
// site with github_webhook from a local bare repository, under load, floods
// and faults, and prints one table. The README's Benchmarks section says
// what each scenario does and how to run it; each scenario is a file here.
//
// With -short every scenario is small and the run asserts correctness only
// (a wrong answer or body, a lost push, a half-built release, a wake by a
// forged delivery): the exit status is 1 when a check failed or a scenario
// could not run. Performance goals are reported by the full run, never
// enforced.
package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// scenario is one part of the run; its run adds rows to the report.
type scenario struct {
	name, title string
	run         func(*run) error
}

var scenarios = []scenario{
	{"serve", "1. serving while deploying", (*run).serve},
	{"flood", "2. forged-delivery flood", (*run).flood},
	{"slots", "2. slot attack (trickling forged deliveries)", (*run).slots},
	{"burst", "3. bursts", (*run).burst},
	{"crash", "4. crashes (kill -9)", (*run).crash},
	{"diskfull", "4. disk full", (*run).diskFull},
	{"latency", "5. delivery to live", (*run).latency},
	{"cost", "5. cost of a deploy, 2,000 vs 20,000 files", (*run).cost},
	{"handler", "6. handler vs go-github", (*run).handlerBench},
	{"hugocache", "7. build cache (Hugo images)", (*run).hugoCache},
	{"cluster", "8. several nodes", (*run).cluster},
	{"previews", "9. previews of pull requests", (*run).previews},
}

func main() {
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	short := fs.Bool("short", false, "small scenarios that assert correctness only (what CI runs)")
	keep := fs.Bool("keep", false, "keep the temporary folder (Caddyfiles, Caddy logs, repositories)")
	useWrk := fs.Bool("wrk", true, "also drive the serving scenario with wrk when it is installed")
	verbose := fs.Bool("v", false, "print progress")
	var names []string
	for _, s := range scenarios {
		names = append(names, s.name)
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: go run ./bench [flags] all|%s... [flags]\n", strings.Join(names, "|"))
		fs.PrintDefaults()
	}
	// Flags may come before or after the scenario names.
	var asked []string
	for args := os.Args[1:]; ; args = fs.Args()[1:] {
		fs.Parse(args)
		if fs.NArg() == 0 {
			break
		}
		asked = append(asked, fs.Arg(0))
	}
	var todo []scenario
	for _, s := range scenarios {
		if slices.Contains(asked, s.name) || slices.Contains(asked, "all") {
			todo = append(todo, s)
		}
	}
	for _, n := range asked {
		if n != "all" && !slices.Contains(names, n) {
			fmt.Fprintf(os.Stderr, "bench: unknown scenario %q\n", n)
			todo = nil
		}
	}
	if len(todo) == 0 {
		fs.Usage()
		os.Exit(2)
	}

	r, err := newRun(*short, *verbose, *useWrk)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	start := time.Now()
	for _, s := range todo {
		r.logf("%s (%s)", s.title, s.name)
		t := time.Now()
		r.rep.scenario = s.title
		if err := s.run(r); err != nil {
			r.rep.fail(err)
			r.logf("%s: %v", s.name, err)
		}
		r.logf("%s took %v", s.name, time.Since(t).Round(100*time.Millisecond))
	}
	mode := "full"
	if *short {
		mode = "short"
	}
	fmt.Printf("\n%s\n\nMode: %s, %s in all. Command: `go run ./bench %s`\n\n",
		machine(r.caddy), mode, time.Since(start).Round(time.Second), strings.Join(os.Args[1:], " "))
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
