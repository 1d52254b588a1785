package deployer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// 1. A first deploy into an empty path makes current a relative symlink into
// the release's publish folder, serving the tip's files.
func TestFirstDeploy(t *testing.T) {
	r := newRemote(t)
	tip := r.commit(map[string]string{"public/index.html": "hello", "README.md": "source"})
	tg := start(t, Config{Remote: r.bare, Repo: "octocat/blog", Publish: "public"})

	s := tg.waitLive(tip)
	link, err := os.Readlink(filepath.Join(tg.path, "current"))
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join("releases", s.Live.Release, "public")
	if link != want {
		t.Errorf("current -> %q, want relative %q", link, want)
	}
	if !strings.HasSuffix(s.Live.Release, "-"+tip[:12]) {
		t.Errorf("release %q does not name commit %s", s.Live.Release, tip[:12])
	}
	if got := readCurrent(t, tg.path, "index.html"); got != "hello" {
		t.Errorf("current/index.html = %q", got)
	}
	if s.Branch != "main" {
		t.Errorf("branch resolved from the remote's HEAD = %q, want main", s.Branch)
	}
	if tg.Branch() != "main" {
		t.Errorf("Branch() = %q", tg.Branch())
	}
	if s.Last == nil || s.Last.Result != "ok" || s.Last.Reason != ReasonStartup || s.Last.Log == "" {
		t.Errorf("last = %+v", s.Last)
	}
	if _, err := os.Stat(s.Last.Log); err != nil {
		t.Errorf("build log: %v", err)
	}
	if n := tg.events.count(EventSucceeded); n != 1 {
		t.Errorf("%d succeeded events, want 1", n)
	}
}

// 2. The next deploy fetches into the same cache repository, and a tip that is
// already live does nothing.
func TestNextDeployReusesCache(t *testing.T) {
	r := newRemote(t)
	first := r.commit(map[string]string{"index.html": "v1"})
	tg := start(t, Config{Remote: r.bare})
	tg.waitLive(first)

	cache := filepath.Join(tg.path, "cache.git")
	before, err := os.Stat(filepath.Join(cache, "config"))
	if err != nil {
		t.Fatal(err)
	}
	// A marker that a second clone (a new cache repository) would lose.
	marker := filepath.Join(cache, "test-marker")
	os.WriteFile(marker, nil, 0o644)

	second := r.commit(map[string]string{"index.html": "v2"})
	tg.Wake(ReasonDelivery)
	tg.waitLive(second)
	if got := readCurrent(t, tg.path, "index.html"); got != "v2" {
		t.Errorf("index.html = %q, want v2", got)
	}
	after, err := os.Stat(filepath.Join(cache, "config"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); err != nil || !os.SameFile(before, after) {
		t.Errorf("cache repository was replaced: a second clone")
	}
	// The first commit's objects are still in the cache: only new ones came.
	mustGit(t, cache, "cat-file", "-e", first+"^{tree}")

	// Already live: no deploy, no new release, no new result.
	last := tg.Status().Last
	for i := 0; i < 3; i++ {
		if c := tg.wake(ReasonDelivery); c.Outcome != OutcomeLive || c.Commit != second {
			t.Errorf("wake %d on a live tip: checked = %+v, want live %s", i+1, c, short(second))
		}
	}
	s := tg.Status()
	if s.Last.At != last.At || len(s.Releases) != 2 || tg.events.count(EventStarted) != 2 {
		t.Errorf("a live tip was deployed again: last=%+v releases=%v started=%d", s.Last, s.Releases, tg.events.count(EventStarted))
	}
}

// 3. Wakes coalesce: 25 wakes during a slow build give at most one more
// deploy, and the last commit ends up live.
func TestWakesCoalesce(t *testing.T) {
	r := newRemote(t)
	r.commit(map[string]string{"index.html": "v1"})
	// Builds wait for a gate the test opens once every wake is sent.
	gate := filepath.Join(t.TempDir(), "gate")
	tg := start(t, Config{Remote: r.bare, Commands: [][]string{{"sh", "-c", `while [ ! -e "$0" ]; do sleep 0.05; done`, gate}}})
	waitFor(t, "the first build to start", func() bool { return tg.events.count(EventStarted) == 1 })

	var tip string
	for i := 0; i < 25; i++ {
		tip = r.commit(map[string]string{"index.html": "v" + strconv.Itoa(i+2)})
		tg.Wake(ReasonDelivery)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tg.waitLive(tip)
	// Wakes are handled in turn: once one more wake is handled, every wake
	// sent before it has been too, and none started a third deploy.
	if c := tg.wake(ReasonDelivery); c.Outcome != OutcomeLive || c.Commit != tip {
		t.Errorf("a wake after the deploys: checked = %+v, want the tip live", c)
	}
	if n := tg.events.count(EventStarted); n > 2 {
		t.Errorf("%d deploys for 26 commits and 26 wakes; want at most 2", n)
	}
	if got := readCurrent(t, tg.path, "index.html"); got != "v26" {
		t.Errorf("index.html = %q, want v26", got)
	}
}

// 4. Failures leave the live release untouched, remove the failed folder, and
// put the error and the output's tail into Status.
func TestFailedBuildKeepsLiveSite(t *testing.T) {
	cases := []struct {
		name     string
		commands [][]string
		publish  string
		files    map[string]string
		timeout  time.Duration
		wantErr  string
		wantTail string
	}{
		{
			name:     "command exits non-zero",
			commands: [][]string{{"sh", "-c", "echo building; echo 'template error: no such layout' >&2; exit 3"}},
			wantErr:  "exit status 3",
			wantTail: "template error: no such layout",
		},
		{
			name:     "command not found",
			commands: [][]string{{"no-such-builder-xyz"}},
			wantErr:  "executable file not found",
		},
		{
			name:    "publish folder missing",
			publish: "public",
			wantErr: `publish folder "public" does not exist`,
		},
		{
			name:     "publish folder links outside the release",
			publish:  "public",
			commands: [][]string{{"ln", "-s", "/etc", "public"}},
			wantErr:  "resolves outside the release",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRemote(t)
			good := r.commit(map[string]string{"index.html": "good", "public/index.html": "good"})
			path := filepath.Join(t.TempDir(), "site")
			tg := start(t, Config{Path: path, Remote: r.bare})
			s := tg.waitLive(good)
			liveRelease := s.Live.Release

			bad := r.commit(map[string]string{"index.html": "bad", "public/index.html": "\x00delete"})
			if err := tg.Update(Config{Path: path, Remote: r.bare, Commands: tc.commands, Publish: tc.publish, Notify: tg.events.notify}); err != nil {
				t.Fatal(err)
			}
			tg.Wake(ReasonDelivery)
			s = tg.waitResult("error", bad)
			if !strings.Contains(s.Last.Error, tc.wantErr) {
				t.Errorf("error = %q, want it to contain %q", s.Last.Error, tc.wantErr)
			}
			if !strings.Contains(s.Last.OutputTail, tc.wantTail) {
				t.Errorf("output tail = %q, want it to contain %q", s.Last.OutputTail, tc.wantTail)
			}
			if s.Live == nil || s.Live.Release != liveRelease || s.Live.Commit != good {
				t.Errorf("live = %+v, want %s untouched", s.Live, liveRelease)
			}
			if got := readCurrent(t, path, "index.html"); got != "good" {
				t.Errorf("served index.html = %q, want good", got)
			}
			if dirs := releaseDirs(t, path); len(dirs) != 1 || dirs[0] != liveRelease {
				t.Errorf("release folders = %v, want only %s", dirs, liveRelease)
			}
			if ev, ok := tg.events.last(EventFailed); !ok || ev.Commit != bad || ev.Err == nil {
				t.Errorf("failed event = %+v", ev)
			}
			// The build log of the failed release is kept for reading.
			if b, err := os.ReadFile(s.Last.Log); err != nil || !strings.Contains(string(b), tc.wantTail) {
				t.Errorf("log %s: %v %q", s.Last.Log, err, b)
			}

			// Poll leaves a tip whose build failed alone; a delivery retries it.
			started := tg.events.count(EventStarted)
			if c := tg.wake(ReasonPoll); c.Outcome != OutcomeWaiting || c.Detail != "failed before" || c.Commit != bad {
				t.Errorf("poll on a tip whose build failed: checked = %+v, want waiting (failed before)", c)
			}
			if n := tg.events.count(EventStarted); n != started {
				t.Errorf("poll rebuilt a failed tip")
			}
			if c := tg.wake(ReasonDelivery); c.Outcome != OutcomeFailed || c.Commit != bad {
				t.Errorf("delivery on a tip whose build failed: checked = %+v, want it built again (and failed)", c)
			}
			if n := tg.events.count(EventStarted); n != started+1 {
				t.Errorf("%d deploys started after a delivery, want %d", n, started+1)
			}
		})
	}
}

// 4. A command past the timeout is killed with everything it started.
func TestTimeoutKillsProcessGroup(t *testing.T) {
	r := newRemote(t)
	good := r.commit(map[string]string{"index.html": "good"})
	path := filepath.Join(t.TempDir(), "site")
	tg := start(t, Config{Path: path, Remote: r.bare})
	tg.waitLive(good)

	pidFile := filepath.Join(t.TempDir(), "child.pid")
	bad := r.commit(map[string]string{"index.html": "bad"})
	tg.Update(Config{Path: path, Remote: r.bare, Timeout: 2 * time.Second, Notify: tg.events.notify,
		// The shell starts a child that would outlive it, then waits.
		Commands: [][]string{{"sh", "-c", `sleep 300 & echo $! > "$0"; echo started; wait`, pidFile}}})
	tg.Wake(ReasonManual)
	s := tg.waitResult("error", bad)
	if !strings.Contains(s.Last.Error, "timeout") {
		t.Errorf("error = %q, want a timeout", s.Last.Error)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	waitFor(t, "the child to die", func() bool { return !alive(pid) })
	if got := readCurrent(t, path, "index.html"); got != "good" {
		t.Errorf("served %q after a timeout", got)
	}
	if len(releaseDirs(t, path)) != 1 {
		t.Errorf("release folders = %v", releaseDirs(t, path))
	}
}

// 4. A dead remote is an error in Status, retried with backoff; Close stops
// the backoff at once.
func TestDeadRemoteRetriesWithBackoff(t *testing.T) {
	r := newRemote(t)
	good := r.commit(map[string]string{"index.html": "good"})
	path := filepath.Join(t.TempDir(), "site")
	tg := start(t, Config{Path: path, Remote: r.bare}, withRetryBase(100*time.Millisecond))
	tg.waitLive(good)

	dead := filepath.Join(t.TempDir(), "gone.git")
	tg.Update(Config{Path: path, Remote: dead, Branch: "main", Notify: tg.events.notify})
	tg.Wake(ReasonDelivery)
	s := tg.waitResult("error", "")
	if !strings.Contains(s.Last.Error, "fetching main") {
		t.Errorf("error = %q", s.Last.Error)
	}
	// Retries happen on their own, and a down remote is announced once.
	first := s.Last.At
	waitFor(t, "a retry", func() bool { return tg.Status().Last.At.After(first) })
	if n := tg.events.count(EventFailed); n != 1 {
		t.Errorf("%d failed events for one outage, want 1", n)
	}
	if got := readCurrent(t, path, "index.html"); got != "good" {
		t.Errorf("served %q", got)
	}
	// Another deployer backs off to a long wait (retryMax, as retryBase
	// is an hour) after its first failure; Close must not wait for it: it
	// must return before a deadline far shorter than the backoff.
	long := start(t, Config{Path: filepath.Join(t.TempDir(), "site"), Remote: dead, Branch: "main"}, withRetryBase(time.Hour))
	waitFor(t, "a fetch failure", func() bool {
		c := long.Status().Checked
		return c != nil && c.Outcome == OutcomeFetchFailed
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := long.Close(ctx); err != nil {
		t.Errorf("Close during a %v backoff: %v", retryMax, err)
	}
}

// 12. Close kills a running build's process group and leaves no goroutine
// (TestMain checks for leaks).
func TestCloseKillsBuild(t *testing.T) {
	r := newRemote(t)
	tip := r.commit(map[string]string{"index.html": "v1"})
	pidFile := filepath.Join(t.TempDir(), "pid")
	path := filepath.Join(t.TempDir(), "site")
	tg := start(t, Config{Path: path, Remote: r.bare, Commands: [][]string{{"sh", "-c", `sleep 300 & echo $! > "$0"; wait`, pidFile}}})
	var pid int
	waitFor(t, "the build to start", func() bool {
		b, err := os.ReadFile(pidFile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && pid > 0
	})
	// The build sleeps for 300s: Close must end it, not wait for it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tg.Close(ctx); err != nil {
		t.Errorf("Close during a build: %v", err)
	}
	if alive(pid) {
		t.Errorf("build child %d outlived Close", pid)
	}
	if err := tg.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := tg.Rollback(t.Context(), ""); !errors.Is(err, ErrClosed) {
		t.Errorf("Rollback after Close = %v", err)
	}
	if n := tg.events.count(EventFailed); n != 0 {
		t.Errorf("a build stopped by Close counted as failed (%d events)", n)
	}
	// Stopping is not the build's fault: the next start builds the tip.
	tg2 := start(t, Config{Path: path, Remote: r.bare})
	tg2.waitLive(tip)
}

// One folder, one process: a second Deployer on the same path is refused.
func TestPathIsLocked(t *testing.T) {
	r := newRemote(t)
	r.commit(map[string]string{"index.html": "v1"})
	tg := start(t, Config{Remote: r.bare})
	d, err := New(Config{Path: tg.path, Remote: r.bare}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); !errors.Is(err, ErrBusy) {
		t.Errorf("Start of a second deployer on one path = %v, want ErrBusy", err)
	}
	// One that never started closes at once, and cannot start after.
	if err := d.Close(context.Background()); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := d.Start(); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close = %v, want ErrClosed", err)
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{Remote: "x"}, "path is required"},
		{Config{Path: "rel", Remote: "x"}, "must be absolute"},
		{Config{Path: "/srv/x"}, "remote is required"},
		{Config{Path: "/srv/x", Remote: "--upload-pack=evil"}, "must not start with '-'"},
		{Config{Path: "/srv/x", Remote: "https://user:pw@github.com/a/b.git"}, "must not carry credentials"},
		{Config{Path: "/srv/x", Remote: "x", Branch: "-x"}, "not a valid branch"},
		{Config{Path: "/srv/x", Remote: "x", Publish: "../x"}, "climbs out"},
		{Config{Path: "/srv/x", Remote: "x", Publish: "/etc"}, "must be relative"},
		{Config{Path: "/srv/x", Remote: "x", Commands: [][]string{{}}}, "command 1 is empty"},
		{Config{Path: "/srv/x", Remote: "x", Env: []string{"NOEQUALS"}}, "not KEY=value"},
		{Config{Path: "/srv/x", Remote: "x", Timeout: -time.Second}, "timeout -1s must be positive"},
		{Config{Path: "/srv/x", Remote: "x", Poll: -time.Second}, "poll -1s must be positive"},
		{Config{Path: "/srv/x", Remote: "x", Keep: -1}, "keep -1 must be at least 1"},
		{Config{Path: "/srv/x", Remote: "x", Depth: -1}, "depth -1 must be 0 (full history) or more"},
		{Config{Path: "/srv/x", Remote: "x", Publish: "public/../public"}, ""},
		// Zero is the default for timeout and keep, the full history for depth.
		{Config{Path: "/srv/x", Remote: "x", Timeout: 0, Keep: 0, Depth: 0}, ""},
	}
	for _, tc := range cases {
		err := tc.cfg.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

// New alone neither locks the folder nor touches git: `caddy validate`
// provisions handlers without running them. Wakes wait for Start.
func TestNewDoesNothingUntilStart(t *testing.T) {
	r := newRemote(t)
	tip := r.commit(map[string]string{"index.html": "v1"})
	path := filepath.Join(t.TempDir(), "site")
	others := goleak.IgnoreCurrent()
	d, err := New(Config{Path: path, Remote: r.bare}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d.Wake(ReasonDelivery)
	// No goroutine of the deployer exists, so nothing can act on the wake
	// until Start: what the test sees now stays so.
	if err := goleak.Find(others); err != nil {
		t.Fatalf("New or Wake started a goroutine: %v", err)
	}
	if _, err := os.Lstat(path); err == nil {
		t.Errorf("%s exists before Start", path)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	tg := &target{Deployer: d, t: t, events: &events{}}
	t.Cleanup(tg.close)
	tg.waitLive(tip)
	// The wake sent before Start was kept: the deploy counts as a delivery.
	if c := tg.Status().Checked; c == nil || c.Reason != ReasonDelivery || c.Outcome != OutcomeDeployed {
		t.Errorf("first check = %+v, want a delivery that deployed", c)
	}
}

// Status().Checked advances once per handled wake and says what came of it:
// a wake that deploys says "deployed", one that finds the tip live says
// "live", and neither leaves a deploy running.
func TestCheckedAdvances(t *testing.T) {
	r := newRemote(t)
	first := r.commit(map[string]string{"index.html": "v1"})
	tg := start(t, Config{Remote: r.bare})

	c := tg.waitChecked(0)
	if c.Outcome != OutcomeDeployed || c.Commit != first || c.Reason != ReasonStartup || c.At.IsZero() {
		t.Fatalf("startup wake: checked = %+v, want deployed %s", c, short(first))
	}
	if s := tg.Status(); s.Running != nil || s.Live == nil || s.Live.Commit != first {
		t.Errorf("after a deployed check: running=%+v live=%+v", s.Running, s.Live)
	}

	tg.Wake(ReasonPoll)
	live := tg.waitChecked(c.Count)
	if live.Outcome != OutcomeLive || live.Commit != first || live.Reason != ReasonPoll || live.Count != c.Count+1 {
		t.Errorf("wake on a live tip: checked = %+v, want live %s", live, short(first))
	}

	second := r.commit(map[string]string{"index.html": "v2"})
	tg.Wake(ReasonDelivery)
	dep := tg.waitChecked(live.Count)
	if dep.Outcome != OutcomeDeployed || dep.Commit != second || dep.Reason != ReasonDelivery {
		t.Errorf("wake on a new tip: checked = %+v, want deployed %s", dep, short(second))
	}
	if got := readCurrent(t, tg.path, "index.html"); got != "v2" {
		t.Errorf("served index.html = %q, want v2", got)
	}
}

// A delivery's way to its 202 (Branch, then Wake) and the status never
// wait on deploy work: with the worker stopped in the middle of a deploy
// at each step WithFault reaches (the wake's deploy begun, a release about
// to be synced and switched with the folder's disk lock held), Branch,
// Wake and Status still return, and the wakes coalesce into one more
// deploy that runs once the worker goes on.
func TestWakeNeverWaitsOnDeploy(t *testing.T) {
	for _, step := range []string{FaultDeploy, FaultSync} {
		t.Run(step, func(t *testing.T) {
			r := newRemote(t)
			r.commit(map[string]string{"index.html": "one"})
			held, goOn := make(chan struct{}), make(chan struct{})
			var once sync.Once
			tg := start(t, Config{Remote: r.bare, Repo: "octocat/blog", Branch: "main"}, WithFault(func(s, _ string) {
				if s == step {
					once.Do(func() { close(held); <-goOn })
				}
			}))
			select {
			case <-held:
			case <-time.After(60 * time.Second):
				t.Fatal("the deploy never reached the fault")
			}
			second := r.commit(map[string]string{"index.html": "two"})
			answered := make(chan struct{})
			go func() {
				defer close(answered)
				for range 100 {
					if tg.Branch() != "main" {
						t.Error("Branch changed")
					}
					tg.Wake(ReasonDelivery)
					tg.Status()
				}
			}()
			select {
			case <-answered:
			case <-time.After(30 * time.Second):
				t.Fatal("Wake, Branch or Status waited on the deploy in progress")
			}
			close(goOn)
			tg.waitLive(second)
		})
	}
}
