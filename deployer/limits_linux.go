package deployer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// cgroupHint is what a refusal of limits suggests.
const cgroupHint = "caps need cgroup v2 with the cpu and memory controllers in Caddy's own cgroup, writable by Caddy " +
	"(with systemd: a host booted with cgroup v2 alone, and Delegate=yes in Caddy's unit)"

// ownCgroup returns the folder of this process's cgroup v2 group: where
// cgroup2 is mounted (/proc/self/mountinfo) joined with the group's path
// (the "0::" line of /proc/self/cgroup).
func ownCgroup() (string, error) {
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", fmt.Errorf("reading this process's cgroups: %w", err)
	}
	group, found := "", false
	for line := range strings.Lines(string(cg)) {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "0::"); ok {
			group, found = p, true
		}
	}
	if !found {
		return "", errors.New("this process is in no cgroup v2 group (the host uses cgroup v1 alone)")
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("reading the mounts: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(mi))
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 1 || g[0] != "cgroup2" {
			continue
		}
		root, mount := f[3], f[4]
		rel, ok := strings.CutPrefix(group, root)
		if root == "/" {
			rel, ok = group, true
		}
		if !ok {
			continue
		}
		return filepath.Join(mount, rel), nil
	}
	return "", errors.New("no cgroup v2 hierarchy is mounted")
}

// limitsAvailable reports whether l's caps can be made here: Caddy's own
// cgroup v2 group offers the controllers they need and Caddy may write it.
// The error says what is missing.
func limitsAvailable(l *Limits) error {
	dir, err := ownCgroup()
	if err != nil {
		return fmt.Errorf("limits: %w; %s", err, cgroupHint)
	}
	ctrl, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("limits: reading the controllers of Caddy's cgroup: %w; %s", err, cgroupHint)
	}
	have := strings.Fields(string(ctrl))
	for _, c := range l.controllers() {
		if !slices.Contains(have, c) {
			return fmt.Errorf("limits: Caddy's cgroup %s has no %s controller in cgroup v2 (it offers: %s); %s",
				dir, c, strings.Join(have, " "), cgroupHint)
		}
	}
	for _, f := range []string{"", "cgroup.subtree_control", "cgroup.procs"} {
		if err := unix.Access(filepath.Join(dir, f), unix.W_OK); err != nil {
			return fmt.Errorf("limits: Caddy may not write its cgroup %s: %w; %s", dir, err, cgroupHint)
		}
	}
	return nil
}

// controllers are the cgroup v2 controllers l needs.
func (l *Limits) controllers() []string {
	var c []string
	if l.CPU > 0 {
		c = append(c, "cpu")
	}
	if l.Memory > 0 {
		c = append(c, "memory")
	}
	return c
}

// cgroupBase is Caddy's cgroup as it was first found: builds get groups
// of their own in it, and Caddy moves into its leaf "caddy" (cgroup v2
// lets a group hand controllers to its children only when it holds no
// process itself).
var cgroupBase struct {
	mu      sync.Mutex
	dir     string
	enabled map[string]bool
}

// buildCgroup is the cgroup of one deploy's commands, with its caps.
type buildCgroup struct {
	dir    string
	fd     int
	limits *Limits
}

// newBuildCgroup makes the cgroup of the build of release name, under
// Caddy's own, capped as l says.
func newBuildCgroup(l *Limits, name string) (*buildCgroup, error) {
	if err := limitsAvailable(l); err != nil && cgroupBase.dir == "" {
		return nil, err
	}
	cgroupBase.mu.Lock()
	if cgroupBase.dir == "" {
		dir, err := ownCgroup()
		if err != nil {
			cgroupBase.mu.Unlock()
			return nil, fmt.Errorf("limits: %w", err)
		}
		cgroupBase.dir, cgroupBase.enabled = dir, map[string]bool{}
	}
	base := cgroupBase.dir
	for _, c := range l.controllers() {
		if cgroupBase.enabled[c] {
			continue
		}
		err := writeCgroup(base, "cgroup.subtree_control", "+"+c)
		if errors.Is(err, unix.EBUSY) {
			// Caddy is in base: into a leaf of its own.
			err = moveProcesses(base, filepath.Join(base, "caddy"))
			if err == nil {
				err = writeCgroup(base, "cgroup.subtree_control", "+"+c)
			}
		}
		if err != nil {
			cgroupBase.mu.Unlock()
			return nil, fmt.Errorf("limits: handing the %s controller to the groups of builds in %s: %w; %s", c, base, err, cgroupHint)
		}
		cgroupBase.enabled[c] = true
	}
	cgroupBase.mu.Unlock()

	dir := filepath.Join(base, "github-webhook-"+name)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("limits: making the build's cgroup: %w", err)
	}
	cg := &buildCgroup{dir: dir, fd: -1, limits: l}
	var err error
	if l.CPU > 0 {
		const period = 100000
		err = writeCgroup(dir, "cpu.max", fmt.Sprintf("%d %d", max(int64(l.CPU*period), 1000), period))
	}
	if err == nil && l.Memory > 0 {
		err = writeCgroup(dir, "memory.max", strconv.FormatInt(l.Memory, 10))
		if err == nil {
			if serr := writeCgroup(dir, "memory.swap.max", "0"); serr != nil && !errors.Is(serr, os.ErrNotExist) {
				err = serr
			}
		}
	}
	if err == nil {
		cg.fd, err = unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		cg.remove()
		return nil, fmt.Errorf("limits: setting the build's caps in %s: %w", dir, err)
	}
	return cg, nil
}

// writeCgroup writes value into the control file name of group dir.
func writeCgroup(dir, name, value string) error {
	return os.WriteFile(filepath.Join(dir, name), []byte(value), 0)
}

// moveProcesses moves every process of group from into group to, made
// if needed.
func moveProcesses(from, to string) error {
	if err := os.Mkdir(to, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	procs, err := os.ReadFile(filepath.Join(from, "cgroup.procs"))
	if err != nil {
		return err
	}
	for _, pid := range strings.Fields(string(procs)) {
		if err := writeCgroup(to, "cgroup.procs", pid); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("moving process %s into %s: %w", pid, to, err)
		}
	}
	return nil
}

// attach makes cmd start inside the group (clone3 with CLONE_INTO_CGROUP):
// it never runs a moment uncapped.
func (cg *buildCgroup) attach(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.UseCgroupFD = true
	cmd.SysProcAttr.CgroupFD = cg.fd
}

// explain returns err, the failure of a command of the build, saying
// which cap it ran into: the kernel killed it for memory, or its CPU was
// held back.
func (cg *buildCgroup) explain(err error) error {
	if err == nil || cg == nil {
		return err
	}
	if n := cgroupCount(cg.dir, "memory.events", "oom_kill"); n > 0 {
		return fmt.Errorf("the build went over its memory cap, %s, and the kernel killed it (%d processes): %w", cg.limits.memoryCap(), n, err)
	}
	if cg.limits.CPU > 0 && errors.Is(err, context.DeadlineExceeded) {
		if n := cgroupCount(cg.dir, "cpu.stat", "nr_throttled"); n > 0 {
			return fmt.Errorf("%w (its CPU was capped by %s, and held back %d times)", err, cg.limits.cpuCap(), n)
		}
	}
	return err
}

// cgroupCount returns the value of key in the flat-keyed file name of
// group dir, 0 when it cannot be read.
func cgroupCount(dir, name, key string) int64 {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), " "); ok && k == key {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// remove kills what is left in the group and removes it.
func (cg *buildCgroup) remove() {
	if cg.fd >= 0 {
		unix.Close(cg.fd)
		cg.fd = -1
	}
	writeCgroup(cg.dir, "cgroup.kill", "1")
	for range 100 {
		if err := os.Remove(cg.dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type buildCgroupKey struct{}

// withBuildCgroup returns ctx carrying cg: the commands run with it start
// in cg (see runCommand).
func withBuildCgroup(ctx context.Context, cg *buildCgroup) context.Context {
	return context.WithValue(ctx, buildCgroupKey{}, cg)
}

// attachBuildCgroup makes cmd start in the build cgroup that ctx carries,
// if any.
func attachBuildCgroup(ctx context.Context, cmd *exec.Cmd) {
	if cg, ok := ctx.Value(buildCgroupKey{}).(*buildCgroup); ok && cg != nil {
		cg.attach(cmd)
	}
}
