package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// What the harness reads of processes and of the machine, from /proc.

// mem returns VmHWM (the peak) and VmRSS of the process in bytes.
func (p *caddyProc) mem() (hwm, rss int64) {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid()))
	for line := range strings.Lines(string(b)) {
		k, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmHWM":
			hwm = n << 10
		case "VmRSS":
			rss = n << 10
		}
	}
	return hwm, rss
}

// cpu returns the CPU time of the process itself and that of its children
// that have ended (the git and build commands the deployer ran).
func (p *caddyProc) cpu() (self, children time.Duration) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid()))
	if err != nil {
		return 0, 0
	}
	// utime, stime, cutime and cstime are fields 14 to 17 of the line,
	// counted from the PID; the command name before them is in parentheses.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 15 {
		return 0, 0
	}
	return ticks(f[11]) + ticks(f[12]), ticks(f[13]) + ticks(f[14])
}

// ticks converts a count of USER_HZ ticks.
func ticks(s string) time.Duration {
	n, _ := strconv.ParseInt(s, 10, 64)
	return time.Duration(n) * time.Second / 100
}

// cpuTimes is the machine's CPU time: busy, and idle or waiting for I/O,
// summed over all cores.
type cpuTimes struct{ busy, idle time.Duration }

func machineCPU() cpuTimes {
	b, _ := os.ReadFile("/proc/stat")
	line, _, _ := strings.Cut(string(b), "\n")
	var t cpuTimes
	for i, x := range append(strings.Fields(line), "")[1:] {
		switch i {
		case 3, 4: // idle, iowait
			t.idle += ticks(x)
		case 0, 1, 2, 5, 6, 7: // user, nice, system, irq, softirq, steal
			t.busy += ticks(x)
		}
	}
	return t
}

func (t cpuTimes) sub(o cpuTimes) cpuTimes { return cpuTimes{t.busy - o.busy, t.idle - o.idle} }
func (t cpuTimes) add(o cpuTimes) cpuTimes { return cpuTimes{t.busy + o.busy, t.idle + o.idle} }

// idlePct is the share of the machine's CPU time that was idle.
func (t cpuTimes) idlePct() float64 { return 100 * t.idle.Seconds() / (t.busy + t.idle).Seconds() }

// processesUnder returns the processes whose working directory is inside
// dir: a build or git that outlived its Caddy.
func processesUnder(dir string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		cwd, err := os.Readlink(p + "/cwd")
		if err != nil || (cwd != dir && !strings.HasPrefix(cwd, dir+"/")) {
			continue
		}
		cmd, _ := os.ReadFile(p + "/cmdline")
		out = append(out, filepath.Base(p)+" "+strings.ReplaceAll(strings.TrimSpace(string(cmd)), "\x00", " "))
	}
	return out
}
