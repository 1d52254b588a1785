package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// markCaddyfile deploys the plain HTML site in remote to path, with a build
// that sleeps, then writes the environment variable BUILD_MARK (set by the
// env subdirective to mark) to mark.txt.
func markCaddyfile(port int, path, remote, mark string) string {
	return siteCaddyfile(port, path, remote, "site",
		"command sh -c `sleep 1; printf '%s' \"$BUILD_MARK\" > mark.txt`",
		"env BUILD_MARK "+mark,
		"timeout 1m")
}

// TestReloadKeepsSiteAndWorker reloads Caddy with a changed Caddyfile in the
// middle of a build: the site is served throughout, the build goes on with
// the settings it started with, no second deploy of the same tip starts, and
// the changed setting applies to the next deploy.
func TestReloadKeepsSiteAndWorker(t *testing.T) {
	const port = 9183
	site := fmt.Sprintf("http://127.0.0.1:%d/", port)
	hook := site + "_github"
	rem := newRemote(t, "html")
	first := rem.git(rem.work, "rev-parse", "HEAD")
	path := filepath.Join(t.TempDir(), "site")
	caddy := startCaddy(t, markCaddyfile(port, path, rem.bare, "one"), home(t))
	waitUntil(t, time.Minute, "the first deploy to go live", func() error { return pageShows(site+"mark.txt", "one") })

	// From now on the site must answer every request.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failures []string
	var requests int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			code, body, err := get(site)
			requests++
			if err != nil || code != http.StatusOK || !strings.Contains(body, "Demo site") {
				failures = append(failures, fmt.Sprintf("%d %v", code, err))
			}
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	second := rem.commit("Second commit")
	if code, body := deliver(t, hook, secret, "push", "e2e-reload-1", pushPayload(t, "octocat/site", first, second)); code != http.StatusAccepted {
		t.Fatalf("push: %d %s", code, body)
	}
	waitUntil(t, 30*time.Second, "the second build to start", func() error {
		if caddy.countLogs("deploying", second) == 0 {
			return fmt.Errorf("not started")
		}
		return nil
	})
	caddy.reload(markCaddyfile(port, path, rem.bare, "two"))

	// The build that was running finishes with the settings it started with.
	waitUntil(t, time.Minute, "the second commit to go live", func() error {
		if st := status(t, path); st.Live == nil || st.Live.Commit != second {
			return fmt.Errorf("live: %+v", st.Live)
		}
		return nil
	})
	if err := pageShows(site+"mark.txt", "one"); err != nil {
		t.Errorf("the build running during the reload: %v", err)
	}
	// The reload started no deploy of its own: the tip is live. Give a second
	// worker, were there one, time to show itself.
	time.Sleep(2 * time.Second)
	if n := caddy.countLogs("deploying", ""); n != 2 {
		t.Errorf("%d deploys started, want 2 (start-up and the delivery)", n)
	}
	if n := caddy.countLogs("deploy failed", ""); n != 0 {
		t.Errorf("%d deploys failed", n)
	}
	if st := status(t, path); len(st.Releases) != 2 || st.Running != nil {
		t.Errorf("after the reload: releases %v, running %+v", st.Releases, st.Running)
	}

	// The next deploy uses the new setting.
	third := rem.commit("Third commit")
	if code, body := deliver(t, hook, secret, "push", "e2e-reload-2", pushPayload(t, "octocat/site", second, third)); code != http.StatusAccepted {
		t.Fatalf("push: %d %s", code, body)
	}
	waitUntil(t, time.Minute, "the third commit to go live with the new setting", func() error {
		return pageShows(site+"mark.txt", "two")
	})
	if st := status(t, path); st.Live == nil || st.Live.Commit != third {
		t.Errorf("live %+v, want %s", st.Live, third)
	}

	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Errorf("%d of %d requests during the test failed: %v", len(failures), requests, failures)
	}
	if requests < 20 {
		t.Errorf("only %d requests were made", requests)
	}
}

// slowBuild is a build script: for a commit holding the file "slow", it
// starts a background child, writes its own and the child's process ids to
// $PID_DIR, and waits for the child (five minutes). Otherwise it builds at
// once.
const slowBuild = `#!/bin/sh
if [ -f slow ]; then
	sleep 300 &
	echo $! > "$PID_DIR/child.tmp" && mv "$PID_DIR/child.tmp" "$PID_DIR/child.pid"
	echo $$ > "$PID_DIR/build.tmp" && mv "$PID_DIR/build.tmp" "$PID_DIR/build.pid"
	wait
fi
echo built > built.txt
`

func slowCaddyfile(port int, path, remote, pidDir string) string {
	return siteCaddyfile(port, path, remote, "site", "command sh build.sh", "env PID_DIR "+pidDir, "timeout 10m")
}

// TestStopMidBuild stops Caddy in the middle of a build, with SIGTERM (a
// clean stop: the build's processes end with Caddy) and with SIGKILL (a
// crash: the next start ends what is left). Either way the live site is
// intact, the next start serves it at once, removes the half-built release
// and deploys the tip again.
func TestStopMidBuild(t *testing.T) {
	for _, tc := range []struct {
		sig  syscall.Signal
		port int
	}{
		{syscall.SIGTERM, 9184},
		{syscall.SIGKILL, 9185},
	} {
		t.Run(tc.sig.String(), func(t *testing.T) {
			site := fmt.Sprintf("http://127.0.0.1:%d/", tc.port)
			hook := site + "_github"
			rem := newRemote(t, "html")
			rem.write("build.sh", slowBuild)
			first := rem.commit("Add the build script")
			path := filepath.Join(t.TempDir(), "site")
			pidDir := t.TempDir()
			env := home(t)
			caddyfile := slowCaddyfile(tc.port, path, rem.bare, pidDir)
			caddy := startCaddy(t, caddyfile, env)
			waitUntil(t, time.Minute, "the first deploy to go live", func() error { return pageShows(site+"built.txt", "built") })
			liveTarget, err := os.Readlink(filepath.Join(path, "current"))
			if err != nil {
				t.Fatal(err)
			}

			rem.write("slow", "")
			rem.write("index.html", "<h1>Second version</h1>\n")
			second := rem.commit("A slow build")
			if code, body := deliver(t, hook, secret, "push", "e2e-slow", pushPayload(t, "octocat/site", first, second)); code != http.StatusAccepted {
				t.Fatalf("push: %d %s", code, body)
			}
			var build, child int
			waitUntil(t, 30*time.Second, "the slow build to start", func() error {
				var err error
				if build, err = readPID(filepath.Join(pidDir, "build.pid")); err != nil {
					return err
				}
				child, err = readPID(filepath.Join(pidDir, "child.pid"))
				return err
			})
			t.Cleanup(func() {
				// Should the test fail before the restart ends them.
				for _, pid := range []int{build, child} {
					if !processGone(pid) {
						syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			})
			halfBuilt := status(t, path).Running
			if halfBuilt == nil || halfBuilt.Release == "" {
				t.Fatalf("no release being built: %+v", halfBuilt)
			}

			caddy.stop(tc.sig)
			if tc.sig == syscall.SIGTERM {
				// A clean stop ends the whole build with Caddy.
				waitUntil(t, 10*time.Second, "the build's processes to end", func() error {
					if !processGone(build) || !processGone(child) {
						return fmt.Errorf("build %d gone %v, child %d gone %v", build, processGone(build), child, processGone(child))
					}
					return nil
				})
			} else {
				// The kernel ends the build's leader with Caddy (parent-death
				// signal); the next start ends the rest of its group.
				waitUntil(t, 10*time.Second, "the build's leader to end", func() error {
					if !processGone(build) {
						return fmt.Errorf("build %d still runs", build)
					}
					return nil
				})
			}
			if got, err := os.Readlink(filepath.Join(path, "current")); err != nil || got != liveTarget {
				t.Fatalf("current is %q (%v), want %q", got, err, liveTarget)
			}
			if b, err := os.ReadFile(filepath.Join(path, "current", "index.html")); err != nil || !strings.Contains(string(b), "Demo site") {
				t.Fatalf("the live site's index.html: %v\n%s", err, b)
			}

			// Mark the half-built release, if the stop left it: the next
			// start must remove it before it builds the tip again, which may
			// reuse its name (releases are named by second and commit).
			marker := filepath.Join(path, "releases", halfBuilt.Release, "e2e-half-built")
			os.WriteFile(marker, nil, 0o644)

			// The next start: serves the live release at once, clears the
			// half-built one and builds the tip again.
			os.Remove(filepath.Join(pidDir, "build.pid"))
			os.Remove(filepath.Join(pidDir, "child.pid"))
			caddy = runCaddy(t, caddy.config, env)
			waitUntil(t, 10*time.Second, "the live site to be served after the restart", func() error {
				return pageShows(site, "Demo site")
			})
			waitUntil(t, 30*time.Second, "the tip to be built again", func() error {
				_, err := readPID(filepath.Join(pidDir, "build.pid"))
				return err
			})
			if !processGone(child) {
				t.Errorf("the background child %d of the stopped build still runs", child)
			}
			if _, err := os.Stat(marker); !os.IsNotExist(err) {
				t.Errorf("the half-built release %s is still there (%v)", halfBuilt.Release, err)
			}
			if err := pageShows(site, "Demo site"); err != nil {
				t.Errorf("while the tip builds again: %v", err)
			}
			caddy.stop(syscall.SIGTERM)
		})
	}
}
