package caddywebhook

import (
	"math"
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/dustin/go-humanize"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
)

// Limits caps what the build's commands take of the machine, all of them
// together. Caps need Linux's cgroup v2 with the cpu and memory
// controllers in Caddy's own cgroup, writable by Caddy (with systemd: a
// host booted with cgroup v2 alone, and Delegate=yes in Caddy's unit):
// elsewhere a configuration with limits is refused when it loads, saying
// what is missing. Commands and git always run at the idle scheduling
// class, caps or not.
type Limits struct {
	// The most CPU time the build takes, in cores: 1.5 is one core and a
	// half. A build held at its cap is slowed, not stopped; past timeout
	// it is killed and the error names the cap. 0 or unset: no cap.
	CPU float64 `json:"cpu,omitempty"`

	// The most memory the build may use, in bytes (page cache included,
	// no swap). A build that needs more is killed by the kernel and the
	// deploy fails naming the cap. 0 or unset: no cap.
	Memory int64 `json:"memory,omitempty"`
}

// deployer returns l as the deployer takes it; nil for nil.
func (l *Limits) deployer() *deployer.Limits {
	if l == nil {
		return nil
	}
	return &deployer.Limits{CPU: l.CPU, Memory: l.Memory}
}

// unmarshalLimits parses
//
//	limits {
//		cpu    <cores>
//		memory <size>
//	}
func (h *Handler) unmarshalLimits(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	l := &Limits{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var v string
		switch d.Val() {
		case "cpu":
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f <= 0 || math.IsInf(f, 0) || math.IsNaN(f) {
				return d.Errf("limits cpu %q: want a number of cores above 0, such as 1.5", v)
			}
			l.CPU = f
		case "memory":
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			size, err := humanize.ParseBytes(v)
			if err != nil || size == 0 || size > 1<<50 {
				return d.Errf("limits memory %q: want a size such as 512MiB", v)
			}
			l.Memory = int64(size)
		default:
			return d.Errf("unknown limits subdirective %q", d.Val())
		}
	}
	if l.CPU == 0 && l.Memory == 0 {
		return d.Err("limits needs cpu, memory or both")
	}
	h.Limits = l
	return nil
}
