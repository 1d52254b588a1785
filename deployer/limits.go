package deployer

import (
	"errors"
	"fmt"
	"math"
	"strconv"
)

// Limits caps what the commands of a deploy may take of the machine, all
// of them together, where Linux's cgroup v2 lets Caddy do so (see
// limitsAvailable): Caddy's own cgroup must have the controllers, and be
// writable by Caddy (systemd: Delegate=yes on Caddy's unit). Elsewhere a
// configuration with limits is refused, naming what is missing.
type Limits struct {
	// CPU is the most CPU time the build takes, in cores (1.5: one core
	// and a half); zero: no cap. A build held at its cap is slowed, not
	// stopped: past the deploy's timeout it is killed, and the error says
	// that its CPU was capped.
	CPU float64
	// Memory is the most memory the build may use, in bytes, page cache
	// included, with no swap; zero: no cap. A build that needs more is
	// killed by the kernel, and the deploy fails saying so.
	Memory int64
}

// validate reports whether l is a set of caps.
func (l *Limits) validate() error {
	if l.CPU < 0 || math.IsNaN(l.CPU) || math.IsInf(l.CPU, 0) || l.CPU > 4096 {
		return fmt.Errorf("limits: cpu %v must be a number of cores above 0", l.CPU)
	}
	if l.CPU > 0 && l.CPU < 0.01 {
		return fmt.Errorf("limits: cpu %v is below the smallest cap, 0.01 cores", l.CPU)
	}
	if l.Memory < 0 || (l.Memory > 0 && l.Memory < 4<<20) {
		return fmt.Errorf("limits: memory %d bytes must be at least 4 MiB", l.Memory)
	}
	if l.CPU == 0 && l.Memory == 0 {
		return errors.New("limits: give cpu, memory or both")
	}
	return nil
}

// cpuCap says the CPU cap as the Caddyfile does.
func (l *Limits) cpuCap() string {
	return "limits cpu " + strconv.FormatFloat(l.CPU, 'f', -1, 64) + " (cores)"
}

// memoryCap says the memory cap as the Caddyfile does.
func (l *Limits) memoryCap() string {
	return fmt.Sprintf("limits memory %d bytes (%.1f MiB)", l.Memory, float64(l.Memory)/(1<<20))
}
