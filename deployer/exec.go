package deployer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// buildNice is the nice value of commands and git: deploys take the CPU
// that serving leaves.
const buildNice = 10

// tailSize is how much of a command's output is kept in memory for Status
// and error messages, so the tail survives a log file that cannot be written
// (a full disk).
const tailSize = 4 << 10

// tailBuffer keeps the last tailSize bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - tailSize; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// String returns the kept output, starting at a line boundary when it was cut.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := string(t.buf)
	if len(t.buf) == tailSize {
		if i := strings.IndexByte(s, '\n'); i >= 0 && i < len(s)-1 {
			s = s[i+1:]
		}
	}
	return strings.TrimRight(s, "\n")
}

// bestEffortWriter writes to w until w fails once, then drops further writes
// without an error, so that a full disk does not stop a command's output from
// reaching the tail buffer.
type bestEffortWriter struct {
	w      io.Writer
	failed error
}

func (b *bestEffortWriter) Write(p []byte) (int, error) {
	if b.w != nil && b.failed == nil {
		if _, err := b.w.Write(p); err != nil {
			b.failed = err
		}
	}
	return len(p), nil
}

// outputSink is where a deploy's commands write: the release's log file, as
// long as the disk takes it, and a tail buffer in memory.
type outputSink struct {
	log  bestEffortWriter
	tail tailBuffer
	mu   sync.Mutex
}

func (o *outputSink) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.log.Write(p)
	return o.tail.Write(p)
}

// run runs argv in dir with env, its standard output to stdout and its
// standard error to stderr, in a session and process group of its own (so
// without a controlling terminal to push input into). When ctx ends, or
// when the command exits, the whole group is killed, so nothing it started
// outlives it unless it left the group (setsid): only a sandbox stops that.
// onStart, if set, is called with the group's id once the process runs.
func run(ctx context.Context, dir string, env []string, stdout, stderr io.Writer, onStart func(pgid int), argv ...string) error {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdin = nil
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setsid: true, // a new session is also a new process group
		// If Caddy dies (even kill -9), the kernel kills the group leader.
		// What it started is found from the state file at the next start.
		Pdeathsig: syscall.SIGKILL,
	}
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return err
	}
	// Builds and git yield the CPU to serving: the whole group runs at a
	// lower priority (children forked from now on inherit it).
	syscall.Setpriority(syscall.PRIO_PGRP, cmd.Process.Pid, buildNice)
	if onStart != nil {
		onStart(cmd.Process.Pid)
	}
	err := cmd.Wait()
	// Background children of a finished command die with it.
	killGroup(cmd.Process.Pid)
	if ctxErr := ctx.Err(); ctxErr != nil && err != nil {
		if errors.Is(ctxErr, context.DeadlineExceeded) {
			return fmt.Errorf("killed after the deploy timeout: %w", ctxErr)
		}
		return fmt.Errorf("killed: %w", ctxErr)
	}
	return err
}

// killGroup sends SIGKILL to process group pgid. A group that is gone is fine.
func killGroup(pgid int) error {
	if pgid <= 1 {
		return nil
	}
	err := syscall.Kill(-pgid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// exitCode returns the exit code in err, or -1.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		return ee.ExitCode()
	}
	return -1
}

// killLeftoverGroup ends the processes of group pgid that a previous Caddy
// left behind, but only those whose environment names release: after a
// reboot the number may belong to somebody else.
func killLeftoverGroup(pgid int, release string) (killed int) {
	if pgid <= 1 {
		return 0
	}
	marker := []byte("DEPLOY_RELEASE=" + release + "\x00")
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	for _, e := range entries {
		pid := 0
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid <= 1 {
			continue
		}
		if pg, err := syscall.Getpgid(pid); err != nil || pg != pgid {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !strings.Contains(string(env)+"\x00", string(marker)) {
			continue
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed++
		}
	}
	return killed
}
