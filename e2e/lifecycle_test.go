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

// markCaddyfile deploys the plain HTML site in remote to the site, with a
// build that appends the commit it builds to the file builds, sleeps, then
// writes the environment variable BUILD_MARK (set by the env subdirective to
// mark) to mark.txt.
func markCaddyfile(s *site, remote, builds, mark string) string {
	return s.caddyfile(remote, "site",
		"command sh -c `echo \"$DEPLOY_COMMIT\" >> \"$BUILDS\"; sleep 1; printf '%s' \"$BUILD_MARK\" > mark.txt`",
		"env BUILDS "+builds,
		"env BUILD_MARK "+mark,
		"timeout 1m")
}

// TestReloadKeepsSiteAndWorker reloads Caddy with a changed Caddyfile in the
// middle of a build: the site is served throughout, the build goes on with
// the settings it started with, no second deploy of the same tip starts, and
// the changed setting applies to the next deploy.
func TestReloadKeepsSiteAndWorker(t *testing.T) {
	s := newSite(t, "site")
	site, hook := s.url("/"), s.hook()
	rem := newRemote(t, "html")
	first := rem.Git("rev-parse", "HEAD")
	builds := filepath.Join(t.TempDir(), "builds")
	caddy := startCaddy(t, s, markCaddyfile(s, rem.Bare, builds, "one"), home(t))
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

	second := rem.Commit("Second commit", nil)
	if code, body := deliver(t, hook, secret, "push", "e2e-reload-1", pushPayload(t, "octocat/site", first, second)); code != http.StatusAccepted {
		t.Fatalf("push: %d %s", code, body)
	}
	waitUntil(t, 30*time.Second, "the second build to start", func() error {
		if st := s.status(t); st.Running == nil || st.Running.Commit != second {
			return fmt.Errorf("running %+v", st.Running)
		}
		return nil
	})
	caddy.reload(markCaddyfile(s, rem.Bare, builds, "two"))

	// The build that was running finishes with the settings it started with.
	s.waitLive(t, second)
	if err := pageShows(site+"mark.txt", "one"); err != nil {
		t.Errorf("the build running during the reload: %v", err)
	}

	// The next deploy uses the new setting.
	third := rem.Commit("Third commit", nil)
	if code, body := deliver(t, hook, secret, "push", "e2e-reload-2", pushPayload(t, "octocat/site", second, third)); code != http.StatusAccepted {
		t.Fatalf("push: %d %s", code, body)
	}
	waitUntil(t, time.Minute, "the third commit to go live with the new setting", func() error {
		return pageShows(site+"mark.txt", "two")
	})
	st := s.waitLive(t, third)

	// The reload started no deploy of its own, and no second worker: each
	// commit was built once, in order. One worker deploys one commit after
	// another, so a deploy the reload had caused would have built before the
	// third commit did; a second worker would have built the tip at once.
	if b, err := os.ReadFile(builds); err != nil || string(b) != first+"\n"+second+"\n"+third+"\n" {
		t.Errorf("builds, one commit a line: %v\n%s\nwant %s, %s and %s", err, b, first, second, third)
	}
	if want := []string{third[:12], second[:12], first[:12]}; len(st.Releases) != 3 ||
		!strings.HasSuffix(st.Releases[0], want[0]) || !strings.HasSuffix(st.Releases[1], want[1]) || !strings.HasSuffix(st.Releases[2], want[2]) {
		t.Errorf("releases %v, want one for each of %v, newest first", st.Releases, want)
	}
	if st.Last == nil || st.Last.Result != "ok" || st.Last.Reason != "delivery" {
		t.Errorf("last deploy %+v", st.Last)
	}
	if errs := caddy.errors(); len(errs) > 0 {
		t.Errorf("the handler logged errors: %+v", errs)
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

func slowCaddyfile(s *site, remote, pidDir string) string {
	return s.caddyfile(remote, "site", "command sh build.sh", "env PID_DIR "+pidDir, "timeout 10m")
}

// TestStopMidBuild stops Caddy in the middle of a build, with SIGTERM (a
// clean stop: the build's processes end with Caddy) and with SIGKILL (a
// crash: the next start ends what is left). Either way the live site is
// intact, the next start serves it at once, removes the half-built release
// and deploys the tip again.
func TestStopMidBuild(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			s := newSite(t, "site")
			site, hook, path := s.url("/"), s.hook(), s.path
			rem := newRemote(t, "html")
			first := rem.Commit("Add the build script", map[string]string{"build.sh": slowBuild})
			pidDir := t.TempDir()
			env := home(t)
			caddy := startCaddy(t, s, slowCaddyfile(s, rem.Bare, pidDir), env)
			waitUntil(t, time.Minute, "the first deploy to go live", func() error { return pageShows(site+"built.txt", "built") })
			liveTarget, err := os.Readlink(filepath.Join(path, "current"))
			if err != nil {
				t.Fatal(err)
			}

			second := rem.Commit("A slow build", map[string]string{"slow": "", "index.html": "<h1>Second version</h1>\n"})
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
			halfBuilt := s.status(t).Running
			if halfBuilt == nil || halfBuilt.Release == "" {
				t.Fatalf("no release being built: %+v", halfBuilt)
			}

			caddy.stop(sig)
			if sig == syscall.SIGTERM {
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
			caddy = runCaddy(t, s, caddy.Config, env)
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
