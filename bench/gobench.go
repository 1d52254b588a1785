package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

var benchLine = regexp.MustCompile(`^Benchmark(\S+?)(?:-\d+)?\s+(\d+)\s+([0-9.]+) ns/op(?:\s+([0-9.]+) MB/s)?\s+(\d+) B/op\s+(\d+) allocs/op`)

// handlerBench runs the handler's Go benchmarks (the handler against
// go-github's ValidatePayload plus ParseWebHook on the same delivery) and
// puts their figures in the table.
func (r *run) handlerBench() error {
	const scn = "6. handler vs go-github"
	pkg := filepath.Join(r.modRoot, "caddywebhook")
	tests, _ := filepath.Glob(filepath.Join(pkg, "*_test.go"))
	found := false
	for _, t := range tests {
		if b, err := os.ReadFile(t); err == nil && strings.Contains(string(b), "\nfunc Benchmark") {
			found = true
		}
	}
	if !found {
		return errors.New("no Benchmark functions in ./caddywebhook")
	}
	args := []string{"test", "-run", "^$", "-bench", ".", "-benchmem", "-count", "1"}
	if r.short {
		args = append(args, "-benchtime", "200x")
	}
	args = append(args, "./caddywebhook")
	cmd := exec.Command("go", args...)
	cmd.Dir = r.modRoot
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	type result struct {
		name                   string
		ns, bytes, allocs, mbs float64
	}
	var res []result
	for _, line := range strings.Split(string(out), "\n") {
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		x := result{name: m[1]}
		x.ns, _ = strconv.ParseFloat(m[3], 64)
		x.mbs, _ = strconv.ParseFloat(m[4], 64)
		x.bytes, _ = strconv.ParseFloat(m[5], 64)
		x.allocs, _ = strconv.ParseFloat(m[6], 64)
		res = append(res, x)
	}
	if len(res) == 0 {
		return fmt.Errorf("no benchmark results in:\n%s", out)
	}
	r.rep.info(scn, "command", "`go "+strings.Join(args, " ")+"`")
	for _, x := range res {
		v := fmt.Sprintf("%s ns/op, %.0f B/op, %.0f allocs/op", num(x.ns), x.bytes, x.allocs)
		if x.mbs > 0 {
			v += fmt.Sprintf(", %s MB/s", num(x.mbs))
		}
		r.rep.info(scn, x.name, v)
	}
	// Side by side: each benchmark of the handler against its go-github twin.
	for _, ours := range res {
		if isGoGitHub(ours.name) {
			continue
		}
		for _, theirs := range res {
			if !isGoGitHub(theirs.name) || twin(theirs.name) != twin(ours.name) {
				continue
			}
			r.rep.perf(scn, fmt.Sprintf("%s vs %s", ours.name, theirs.name),
				fmt.Sprintf("%.2f× the time, %.2f× the allocs", ours.ns/theirs.ns, ours.allocs/max(theirs.allocs, 1)),
				"time ≤ 1×, fewer allocs", ours.ns <= theirs.ns && ours.allocs < theirs.allocs)
		}
	}
	return nil
}

// isGoGitHub reports whether a benchmark measures go-github.
func isGoGitHub(name string) bool {
	n := strings.ToLower(name)
	return strings.Contains(n, "gogithub") || strings.Contains(n, "go-github") || strings.Contains(n, "go_github")
}

// twin is a benchmark's name without who it measures, so that the handler's
// and go-github's runs of the same case match: "ServeHTTP/Handler" and
// "ServeHTTP/GoGitHub" are twins, as are "Handler" and "GoGitHub".
func twin(name string) string {
	n := strings.ToLower(name)
	for _, w := range []string{"gogithub", "go-github", "go_github", "handler", "ours"} {
		n = strings.ReplaceAll(n, w, "")
	}
	return strings.Trim(n, "/_-")
}

// num prints a figure with at most four significant digits.
func num(f float64) string {
	switch {
	case f >= 1000:
		return strconv.FormatFloat(f, 'f', 0, 64)
	case f >= 10:
		return strconv.FormatFloat(f, 'f', 1, 64)
	default:
		return strconv.FormatFloat(f, 'f', 2, 64)
	}
}
