package deployer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestMain(m *testing.M) {
	makeSocketIfAsked()
	// Tests must not read or write the user's git configuration.
	home, err := os.MkdirTemp("", "deployer-home-")
	if err != nil {
		panic(err)
	}
	for k, v := range map[string]string{
		"HOME":                home,
		"XDG_CONFIG_HOME":     filepath.Join(home, ".config"),
		"GIT_CONFIG_NOSYSTEM": "1",
		"GIT_AUTHOR_NAME":     "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
		"GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com",
	} {
		os.Setenv(k, v)
	}
	code := m.Run()
	os.RemoveAll(home)
	if code == 0 {
		// certmagic's FileStorage refreshes a lock it holds on a goroutine
		// that notices the unlock up to 5 s later.
		if err := goleak.Find(goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.keepLockfileFresh")); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines leaked:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// makeSocketEnv names the variable under which the test binary, run as a
// build command, binds a unix socket at the path it holds and exits,
// leaving the socket file behind (see TestMain).
const makeSocketEnv = "DEPLOYER_TEST_MAKE_SOCKET"

// makeSocketIfAsked is the build command of TestSocketFromBuildNeverGoesLive:
// asked (by $DEPLOYER_TEST_MAKE_SOCKET), it binds a socket at that path and
// exits without closing it (a closed listener removes the file).
func makeSocketIfAsked() {
	name := os.Getenv(makeSocketEnv)
	if name == "" {
		return
	}
	if _, err := net.Listen("unix", name); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// remote is testkit's bare remote with a working clone, under the names the
// tests use: bare is the remote a deployer fetches from, work the clone.
type remote struct {
	*testkit.Remote
	bare string
	work string
}

func newRemote(t testing.TB) *remote {
	t.Helper()
	r := testkit.NewRemote(t)
	return &remote{Remote: r, bare: r.Bare, work: r.Work}
}

// commit writes files (a value of "\x00delete" deletes the file), commits
// everything in the working clone, pushes to main and returns the commit.
func (r *remote) commit(files map[string]string) string {
	write := map[string]string{}
	for name, content := range files {
		if content == "\x00delete" {
			os.Remove(filepath.Join(r.work, name))
			continue
		}
		write[name] = content
	}
	return r.Commit("change", write)
}

func mustGit(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// events collects what a Deployer notifies.
type events struct {
	mu  sync.Mutex
	all []Event
}

func (e *events) notify(ev Event) {
	e.mu.Lock()
	e.all = append(e.all, ev)
	e.mu.Unlock()
}

func (e *events) count(kind EventKind) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.all {
		if ev.Kind == kind {
			n++
		}
	}
	return n
}

func (e *events) last(kind EventKind) (Event, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := len(e.all) - 1; i >= 0; i-- {
		if e.all[i].Kind == kind {
			return e.all[i], true
		}
	}
	return Event{}, false
}

// target is a Deployer under test with what it logs and notifies.
type target struct {
	*Deployer
	t      testing.TB
	events *events
	logs   *observer.ObservedLogs
}

func start(t testing.TB, cfg Config, opts ...Option) *target {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = filepath.Join(t.TempDir(), "site")
	}
	ev := &events{}
	if cfg.Notify == nil {
		cfg.Notify = ev.notify
	}
	core, logs := observer.New(zapcore.DebugLevel)
	d, err := New(cfg, zap.New(core), opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := d.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	tg := &target{Deployer: d, t: t, events: ev, logs: logs}
	t.Cleanup(func() { tg.close() })
	return tg
}

func (tg *target) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tg.Close(ctx); err != nil {
		tg.t.Errorf("Close: %v", err)
	}
}

// waitFor polls cond until it holds, failing the test after 60 seconds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testkit.WaitFor(t, 60*time.Second, what, func() error {
		if !cond() {
			return errors.New("not yet")
		}
		return nil
	})
}

// waitLive waits until commit is live and no deploy runs.
func (tg *target) waitLive(commit string) Status {
	tg.t.Helper()
	var s Status
	testkit.WaitFor(tg.t, 60*time.Second, "commit "+short(commit)+" live", func() error {
		s = tg.Status()
		if s.Live != nil && s.Live.Commit == commit && s.Running == nil {
			return nil
		}
		return lastOf(s)
	})
	return s
}

// lastOf says what the last deploy of s came to, for a wait that failed.
func lastOf(s Status) error {
	if s.Last == nil {
		return errors.New("not yet: no deploy ended")
	}
	return fmt.Errorf("not yet: the last deploy (of %s) ended %s: %s", short(s.Last.Commit), s.Last.Result, s.Last.Error)
}

// waitDeployed waits until the last deploy is of commit, whatever came of
// it, and no deploy runs, and returns its result.
func (tg *target) waitDeployed(commit string) *Result {
	tg.t.Helper()
	var last *Result
	waitFor(tg.t, "a deploy of "+short(commit), func() bool {
		s := tg.Status()
		last = s.Last
		return s.Running == nil && last != nil && last.Commit == commit
	})
	return last
}

// waitResult waits until the last result is for commit (or any, if "") and
// no deploy runs.
func (tg *target) waitResult(result, commit string) Status {
	tg.t.Helper()
	var s Status
	testkit.WaitFor(tg.t, 60*time.Second, "a deploy result "+result, func() error {
		s = tg.Status()
		if s.Running == nil && s.Last != nil && s.Last.Result == result && (commit == "" || s.Last.Commit == commit) {
			return nil
		}
		return lastOf(s)
	})
	return s
}

// waitChecked waits until Status().Checked counts past after, and returns
// it: a wake was handled, its deploy (if any) has ended.
func (tg *target) waitChecked(after uint64) Checked {
	tg.t.Helper()
	var c *Checked
	waitFor(tg.t, "a wake handled after check "+strconv.FormatUint(after, 10), func() bool {
		c = tg.Status().Checked
		return c != nil && c.Count > after
	})
	return *c
}

// wake wakes an idle worker (no deploy running, none pending) with r and
// returns what the worker found: exactly one more wake is handled.
func (tg *target) wake(r Reason) Checked {
	tg.t.Helper()
	s := tg.Status()
	if s.Running != nil {
		tg.t.Fatalf("wake(%s) while a deploy runs: %+v", r, s.Running)
	}
	var before uint64
	if s.Checked != nil {
		before = s.Checked.Count
	}
	tg.Wake(r)
	return tg.waitChecked(before)
}

func readCurrent(t testing.TB, path, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(path, "current", name))
	if err != nil {
		t.Fatalf("reading current/%s: %v", name, err)
	}
	return string(b)
}

func releaseDirs(t testing.TB, path string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(path, "releases"))
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, e.Name())
		}
	}
	return dirs
}

// Release modes of the trust tests: without commands a deploy takes the
// hard-link fast path; with one it checks out in full.
var releaseModes = []struct {
	name     string
	commands [][]string
}{
	{"fast path", nil},
	{"checkout", [][]string{{"true"}}},
}

// waitRefused waits until no deploy runs and either the last one failed or
// tip went live, and marks the test failed unless the deploy failed.
func (tg *target) waitRefused(tip string) Status {
	tg.t.Helper()
	var s Status
	waitFor(tg.t, "the deploy of "+short(tip)+" to end", func() bool {
		s = tg.Status()
		return s.Running == nil && s.Last != nil && (s.Last.Result == "error" || s.Live != nil && s.Live.Commit == tip)
	})
	if s.Last.Result != "error" {
		tg.t.Errorf("commit %s went live: %+v", short(tip), s.Last)
	}
	return s
}

// assertLiveUnchanged checks what a visitor sees after a refused deploy: the
// same release, serving the same index.html, and no file named name.
func assertLiveUnchanged(t *testing.T, tg *target, live *Live, index, name string) {
	t.Helper()
	s := tg.Status()
	if s.Live == nil || s.Live.Release != live.Release || s.Live.Commit != live.Commit {
		t.Errorf("live = %+v, want release %s unchanged", s.Live, live.Release)
	}
	if got := readCurrent(t, tg.path, "index.html"); got != index {
		t.Errorf("current/index.html = %q, want %q", got, index)
	}
	if name != "" {
		if _, err := os.Lstat(filepath.Join(tg.path, "current", name)); err == nil {
			t.Errorf("current/%s exists: the refused release went live", name)
		}
	}
}

// alive reports whether pid runs (and is not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}
