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
)

// buildNice is the nice value of commands and git where the SCHED_IDLE
// class is not to be had (see yieldToServing): deploys take the CPU that
// serving leaves.
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
// standard error to stderr, in a process group of its own (see startGroup:
// on Unix also a session of its own, so without a controlling terminal to
// push input into). When ctx ends, or when the command exits, the whole
// group is killed, so nothing it started outlives it unless it left the
// group (setsid): only a sandbox stops that. onStart, if set, is called with
// the group's id once the process runs.
func run(ctx context.Context, dir string, env []string, stdout, stderr io.Writer, onStart func(pgid int), argv ...string) error {
	return runFiles(ctx, dir, env, nil, stdout, stderr, onStart, argv...)
}

// runFiles is run with files open in the process too, files[i] as its
// descriptor 3+i, which the children it starts inherit unless it closes
// them.
func runFiles(ctx context.Context, dir string, env []string, files []*os.File, stdout, stderr io.Writer, onStart func(pgid int), argv ...string) error {
	cmd := command(ctx, dir, env, stdout, stderr, argv)
	cmd.ExtraFiles = files
	return runCommand(ctx, cmd, onStart, nil)
}

// command returns the command that run runs.
func command(ctx context.Context, dir string, env []string, stdout, stderr io.Writer, argv []string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdin = nil
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	return cmd
}

// runCommand runs cmd as run does. started, if set, is called once cmd
// runs (after onStart); when it fails, the group is killed and its error
// returned; the function it returns, if any, is called once the group has
// ended. The sandbox uses it to attach a network to the command's
// namespace.
func runCommand(ctx context.Context, cmd *exec.Cmd, onStart func(pgid int), started func() (func(), error)) error {
	attachBuildCgroup(ctx, cmd) // a build's caps, if any (see Limits)
	g, err := startGroup(cmd)
	if err != nil {
		return err
	}
	if onStart != nil {
		onStart(g.pgid)
	}
	if started != nil {
		done, err := started()
		if err != nil {
			g.end()
			cmd.Wait()
			return killedErr(ctx, err)
		}
		if done != nil {
			defer done()
		}
	}
	err = cmd.Wait()
	// Background children of a finished command die with it.
	g.end()
	return killedErr(ctx, err)
}

// killedErr returns err, said as a kill when ctx ended.
func killedErr(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil && err != nil {
		if errors.Is(ctxErr, context.DeadlineExceeded) {
			return fmt.Errorf("killed after the deploy timeout: %w", ctxErr)
		}
		return fmt.Errorf("killed: %w", ctxErr)
	}
	return err
}

// process is a long-lived command started by startProcess, which the
// caller talks to through Stdin and Stdout.
type process struct {
	// Stdin is the write end of the process's standard input, nil when
	// startProcess was given a reader. Closing it ends the input.
	Stdin io.WriteCloser
	// Stdout is the read end of its standard output. Read it to the end
	// before Wait, which closes it.
	Stdout io.ReadCloser

	ctx    context.Context
	cmd    *exec.Cmd
	group  *group
	stderr tailBuffer
	name   string              // what errors call it: "git cat-file"
	scrub  func(string) string // applied to the standard error in errors
}

// startProcess starts argv in dir with env as run does (its own process
// group, the same kill when ctx ends, the same lower priority, the same
// end with Caddy), for a caller that talks to it through pipes: its
// standard input is stdin, or a pipe in p.Stdin when stdin is nil; its
// standard output a pipe in p.Stdout; the tail of its standard error goes
// into the error of Wait.
func startProcess(ctx context.Context, dir string, env []string, stdin io.Reader, argv ...string) (*process, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = env
	p := &process{ctx: ctx, cmd: cmd, name: argv[0]}
	var err error
	if stdin != nil {
		cmd.Stdin = stdin
	} else if p.Stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if p.Stdout, err = cmd.StdoutPipe(); err != nil {
		return nil, err
	}
	cmd.Stderr = &p.stderr
	if p.group, err = startGroup(cmd); err != nil {
		return nil, err
	}
	return p, nil
}

// Wait closes Stdin, waits for the process to exit and kills what is left
// of its group. Its error names the process and carries the tail of its
// standard error, scrubbed.
func (p *process) Wait() error {
	if p.Stdin != nil {
		p.Stdin.Close()
	}
	err := p.cmd.Wait()
	p.group.end()
	if err = killedErr(p.ctx, err); err == nil {
		return nil
	}
	msg := strings.TrimSpace(p.stderr.String())
	if p.scrub != nil {
		msg = p.scrub(msg)
	}
	if msg != "" {
		err = fmt.Errorf("%w: %s", err, msg)
	}
	return fmt.Errorf("%s: %w", p.name, err)
}

// exitCode returns the exit code in err, or -1.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		return ee.ExitCode()
	}
	return -1
}
