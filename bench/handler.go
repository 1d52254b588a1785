package main

import (
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

var benchLine = regexp.MustCompile(`(?m)^BenchmarkDelivery/(\S+?)(?:-\d+)?\s+\d+\s+([0-9.]+) ns/op(?:\s+[0-9.]+ MB/s)?\s+\d+ B/op\s+(\d+) allocs/op`)

// handlerBench runs BenchmarkDelivery of ./caddywebhook: the handler
// answering a signed push for another branch, against go-github's
// ValidatePayload plus ParseWebHook on the same bytes (the other forges'
// figures, beside them, are shown as they are). The benchmark checks
// every answer itself; the short run only runs it once, as a check.
func (r *run) handlerBench() error {
	args := []string{"test", "-run", "^$", "-bench", "^BenchmarkDelivery$", "-benchmem", "-count", "1"}
	if r.short {
		args = append(args, "-benchtime", "1x")
	}
	args = append(args, "./caddywebhook")
	cmd := exec.Command("go", args...)
	cmd.Dir = r.modRoot
	out, err := cmd.CombinedOutput()
	command := "`go " + strings.Join(args, " ") + "`"
	r.rep.check("benchmark runs and its answers are right", command, "passes", err == nil)
	if err != nil {
		r.logf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		return nil
	}
	ns, allocs := map[string]float64{}, map[string]float64{}
	for _, m := range benchLine.FindAllStringSubmatch(string(out), -1) {
		ns[m[1]], _ = strconv.ParseFloat(m[2], 64)
		allocs[m[1]], _ = strconv.ParseFloat(m[3], 64)
		r.rep.info("Delivery/"+m[1], fmt.Sprintf("%.0f ns/op, %.0f allocs/op", ns[m[1]], allocs[m[1]]))
	}
	h, g := "handler", "go-github"
	if _, ok := ns[h]; !ok {
		return fmt.Errorf("want the results of Delivery/handler and Delivery/go-github in:\n%s", out)
	}
	if _, ok := ns[g]; !ok {
		return fmt.Errorf("want the results of Delivery/handler and Delivery/go-github in:\n%s", out)
	}
	r.rep.perf("handler vs go-github", fmt.Sprintf("%.2f× the time, %.2f× the allocs", ns[h]/ns[g], allocs[h]/max(allocs[g], 1)),
		"time ≤ 1×, fewer allocs", ns[h] <= ns[g] && allocs[h] < allocs[g])
	return nil
}
