//go:build unix

package deployer

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// socketPair returns the two ends of a connected Unix stream socket, both
// close-on-exec: ours, non-blocking (its reads and writes wait in Go's
// poller, and Close ends them), and theirs, blocking, for a child through
// exec.Cmd.ExtraFiles.
func socketPair() (ours, theirs *os.File, err error) {
	// Held for reading, ForkLock keeps a process from being started, and
	// from inheriting the ends, before they are close-on-exec (as the net
	// package does where SOCK_CLOEXEC is missing).
	syscall.ForkLock.RLock()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fds[0])
		syscall.CloseOnExec(fds[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, nil, fmt.Errorf("creating a socket pair: %w", err)
	}
	if err := syscall.SetNonblock(fds[0], true); err != nil {
		syscall.Close(fds[0])
		syscall.Close(fds[1])
		return nil, nil, fmt.Errorf("creating a socket pair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "credential socket"), os.NewFile(uintptr(fds[1]), "credential socket"), nil
}

// group is the process group of a command that startGroup started.
type group struct {
	pgid    int
	watcher *watcher // nil where the parent-death signal is used
	release func()   // ends the thread that started the command (startIdle)
}

// startGroup starts cmd in a session and process group of its own, so with
// no controlling terminal, at a lower priority (see yieldToServing; children
// forked from then on inherit it), killed as a group when cmd's context ends, and bound to this
// process: if Caddy dies, even by kill -9, the group dies too.
//
// On Linux the kernel sends the parent-death signal to the group's leader
// (what the leader started is found from the state file at the next start:
// see killLeftoverGroup). Elsewhere a watcher (see watcherScript) kills the
// whole group when this process dies.
func startGroup(cmd *exec.Cmd) (*group, error) {
	g := &group{}
	if !useParentDeathSignal {
		var err error
		if g.watcher, err = startWatcher(); err != nil {
			return nil, err
		}
	}
	// A new session is also a new process group.
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setsid = true
	if useParentDeathSignal {
		setParentDeathSignal(cmd.SysProcAttr)
	}
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
	cmd.WaitDelay = 5 * time.Second
	var err error
	if g.release, err = startIdle(cmd.Start); err != nil {
		g.watcher.stop()
		return nil, err
	}
	g.pgid = cmd.Process.Pid
	if err := g.watcher.watch(g.pgid); err != nil {
		killGroup(g.pgid)
		cmd.Wait()
		g.release()
		g.watcher.stop()
		return nil, err
	}
	// Builds and git yield the CPU and the disk to serving.
	yieldToServing(g.pgid)
	return g, nil
}

// end kills what is left of the group, then its watcher, and ends the
// thread that started it.
func (g *group) end() {
	killGroup(g.pgid)
	g.release()
	g.watcher.stop()
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

// watcherScript is the watcher of one command's group, run by /bin/sh where
// no parent-death signal binds the command to Caddy. It is a constant: its
// only data is the group's id, a line on its standard input. Its standard
// input is a pipe whose write end only Caddy holds. Once it has the id, it
// reads on; when Caddy dies, however it dies, the kernel closes the write
// end, the read sees the end of input, and the script kills the whole
// group. When the command ends while Caddy lives, Caddy kills the group and
// then the watcher. It runs in a session of its own (no terminal's signals
// reach it) and ignores hang-ups and interrupts.
const watcherScript = `trap '' HUP INT
IFS= read -r pgid || exit 0
case $pgid in ''|*[!0-9]*) exit 2 ;; esac
while IFS= read -r _; do :; done
kill -s KILL -- "-$pgid" 2>/dev/null
`

// watcherShell runs watcherScript: a fixed path, so that no PATH chooses it.
const watcherShell = "/bin/sh"

// watcher is a running watcherScript.
type watcher struct {
	cmd *exec.Cmd
	w   *os.File // the write end of its standard input
}

// startWatcher starts a watcher, before the command it will watch, so that
// the command never runs unwatched but for the instant between its start
// and watch.
func startWatcher() (*watcher, error) {
	r, w, err := os.Pipe() // close-on-exec: no other child inherits w
	if err != nil {
		return nil, fmt.Errorf("starting the watcher that ends the command with Caddy: %w", err)
	}
	cmd := exec.Command(watcherShell, "-c", watcherScript)
	cmd.Stdin = r
	cmd.Env = []string{"PATH=/usr/bin:/bin"} // none of Caddy's variables
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	r.Close()
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("starting the watcher that ends the command with Caddy: %w", err)
	}
	return &watcher{cmd: cmd, w: w}, nil
}

// watch tells the watcher which group to kill when Caddy dies. A nil
// watcher watches nothing.
func (w *watcher) watch(pgid int) error {
	if w == nil {
		return nil
	}
	if _, err := fmt.Fprintf(w.w, "%d\n", pgid); err != nil {
		return fmt.Errorf("handing the command to its watcher: %w", err)
	}
	return nil
}

// stop ends the watcher without it killing anything. A nil watcher is fine.
func (w *watcher) stop() {
	if w == nil {
		return
	}
	w.cmd.Process.Kill()
	w.cmd.Wait()
	w.w.Close()
}
