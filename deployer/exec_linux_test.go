package deployer

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// fakeCaddyEnv, when set to a folder, makes the test binary a fake Caddy
// (see fakeCaddy) instead of running tests; fakeCaddyModeEnv says how it
// binds its commands to itself: "watcher" or "pdeathsig".
const (
	fakeCaddyEnv     = "DEPLOYER_TEST_FAKE_CADDY"
	fakeCaddyModeEnv = "DEPLOYER_TEST_FAKE_CADDY_MODE"
)

// buildScript is the build the fake Caddy runs: a group leader and a
// background child, whose ids it writes to build.pids once both run.
const buildScript = `sleep 300 & echo "$$ $!" > build.tmp && mv build.tmp build.pids; wait`

// fakeCaddy starts, as the deployer does, a build through run and a
// long-lived process (as git cat-file --batch) through startProcess, writes
// their ids into dir, and then waits to be killed.
func fakeCaddy(dir string) {
	useParentDeathSignal = os.Getenv(fakeCaddyModeEnv) == "pdeathsig"
	env := append(os.Environ(), "DEPLOY_RELEASE="+dir)
	go run(context.Background(), dir, env, io.Discard, io.Discard, nil, "/bin/sh", "-c", buildScript)
	p, err := startProcess(context.Background(), dir, env, nil, "cat")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	watcher := 0
	if p.group.watcher != nil {
		watcher = p.group.watcher.cmd.Process.Pid
	}
	os.WriteFile(filepath.Join(dir, "cat.tmp"), fmt.Appendf(nil, "%d %d", p.cmd.Process.Pid, watcher), 0o644)
	os.Rename(filepath.Join(dir, "cat.tmp"), filepath.Join(dir, "cat.pids"))
	select {}
}

// A build never outlives the Caddy that started it, even when Caddy is
// killed with kill -9: a fake Caddy (this test binary, run again) starts a
// build that forks a background child, and a long-lived process, and is
// then killed. With the watcher (macOS and the BSDs; forced here), the
// whole group of the build dies with it; with Linux's parent-death signal,
// its leader and the long-lived process die with it and the rest of the
// group at the next start (killLeftoverGroup).
func TestCommandsDieWithCaddy(t *testing.T) {
	if dir := os.Getenv(fakeCaddyEnv); dir != "" {
		fakeCaddy(dir)
	}
	for _, mode := range []string{"watcher", "pdeathsig"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			var out bytes.Buffer
			caddy := exec.Command(os.Args[0], "-test.run=^TestCommandsDieWithCaddy$")
			caddy.Env = append(os.Environ(), fakeCaddyEnv+"="+dir, fakeCaddyModeEnv+"="+mode)
			caddy.Stdout, caddy.Stderr = &out, &out
			if err := caddy.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan struct{})
			go func() { caddy.Wait(); close(exited) }()
			t.Cleanup(func() { caddy.Process.Kill(); <-exited })

			build := readPids(t, dir, "build.pids", exited, &out) // leader, child
			cat := readPids(t, dir, "cat.pids", exited, &out)     // process, its watcher
			t.Cleanup(func() { killGroup(build[0]); syscall.Kill(build[1], syscall.SIGKILL) })
			for _, pid := range []int{build[0], build[1], cat[0]} {
				if !alive(pid) {
					t.Fatalf("process %d does not run before Caddy is killed", pid)
				}
			}
			if got := cat[1] != 0; got != (mode == "watcher") {
				t.Fatalf("the long-lived process has a watcher: %v, in mode %s", got, mode)
			}

			caddy.Process.Signal(syscall.SIGKILL)
			<-exited

			waitFor(t, "the build's leader to die with Caddy", func() bool { return !alive(build[0]) })
			waitFor(t, "the long-lived process to die with Caddy", func() bool { return !alive(cat[0]) })
			if mode == "watcher" {
				waitFor(t, "the build's background child to die with Caddy", func() bool { return !alive(build[1]) })
				waitFor(t, "the watcher to exit", func() bool { return !alive(cat[1]) })
				return
			}
			// The next start ends the rest of the group, found by the
			// record of its id and checked by its environment.
			if n := killLeftoverGroup(build[0], dir); n != 1 {
				t.Errorf("killLeftoverGroup killed %d processes, want the background child alone", n)
			}
			waitFor(t, "the build's background child to die at the next start", func() bool { return !alive(build[1]) })
		})
	}
}

// readPids waits for the fake Caddy to write file in dir, and returns the
// numbers in it.
func readPids(t *testing.T, dir, file string, exited <-chan struct{}, out *bytes.Buffer) []int {
	t.Helper()
	var b []byte
	waitFor(t, file, func() bool {
		select {
		case <-exited:
			t.Fatalf("the fake Caddy exited:\n%s", out)
		default:
		}
		var err error
		b, err = os.ReadFile(filepath.Join(dir, file))
		return err == nil
	})
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("%s: %q", file, b)
		}
		pids = append(pids, n)
	}
	return pids
}

// The watcher kills the group it was handed when its input ends, which is
// what the kernel does to it when Caddy dies; stopped (the command ended
// while Caddy lives), it goes without killing anything.
func TestWatcher(t *testing.T) {
	for _, tc := range []struct {
		name     string
		wantKill bool
	}{
		{name: "caddy dies", wantKill: true},
		{name: "command ended", wantKill: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := startWatcher()
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("sleep", "300")
			cmd.SysProcAttr = ownGroupAttr()
			if err := cmd.Start(); err != nil {
				w.stop()
				t.Fatal(err)
			}
			if err := w.watch(cmd.Process.Pid); err != nil {
				t.Fatal(err)
			}
			if tc.wantKill {
				t.Cleanup(func() { w.cmd.Wait() })
				w.w.Close() // as the kernel does when Caddy dies
				waitFor(t, "the watched command to be killed", func() bool { return !alive(cmd.Process.Pid) })
				err := cmd.Wait()
				if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
					t.Fatalf("the watched command ended with %v, want killed", err)
				}
				return
			}
			t.Cleanup(func() { killGroup(cmd.Process.Pid); cmd.Wait() })
			w.stop()
			// The watcher is gone (waited for), so any kill it sent was
			// sent: the command runs on.
			if err := syscall.Kill(cmd.Process.Pid, 0); err != nil || !alive(cmd.Process.Pid) {
				t.Fatalf("the command is gone after its watcher was stopped: %v", err)
			}
		})
	}
}
