package deployer

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// 9 and 10. Commands see the release as a git checkout of the commit, the
// DEPLOY_* variables and env; they run as argv, never through a shell.
func TestCommandsSeeCommitAndEnv(t *testing.T) {
	t.Setenv("TEST_WEBHOOK_SECRET", "s3cret")
	for _, depth := range []int{DefaultDepth, 0} { // 0: the full history
		t.Run("depth="+strconv.Itoa(depth), func(t *testing.T) {
			r := newRemote(t)
			r.commit(map[string]string{"a": "1"})
			r.commit(map[string]string{"a": "2"})
			tip := r.commit(map[string]string{"a": "3"})
			tg := start(t, Config{
				Remote: r.bare, Repo: "octocat/blog", Depth: depth,
				Env:   []string{"HUGO_ENV=production"},
				Unset: []string{"TEST_WEBHOOK_SECRET"},
				Commands: [][]string{
					{"sh", "-c", `git rev-parse HEAD > head.txt; git rev-list --count HEAD > count.txt; env | grep -E '^(DEPLOY_|HUGO_ENV|TEST_WEBHOOK_SECRET)' | sort > env.txt; nice > nice.txt`},
					{"printf", "%s", "$HOME; rm -rf / `id`"},
				},
			})
			s := tg.waitLive(tip)
			if got := strings.TrimSpace(readCurrent(t, tg.path, "head.txt")); got != tip {
				t.Errorf("git rev-parse HEAD in the release = %q, want %s", got, tip)
			}
			wantCount := "1"
			if depth == 0 {
				wantCount = "3"
			}
			if got := strings.TrimSpace(readCurrent(t, tg.path, "count.txt")); got != wantCount {
				t.Errorf("history length = %s, want %s", got, wantCount)
			}
			env := readCurrent(t, tg.path, "env.txt")
			if strings.Contains(env, "TEST_WEBHOOK_SECRET") {
				t.Errorf("an unset variable reached the build:\n%s", env)
			}
			for _, want := range []string{
				"DEPLOY_BRANCH=main", "DEPLOY_COMMIT=" + tip, "DEPLOY_REPO=octocat/blog",
				"DEPLOY_RELEASE=" + filepath.Join(tg.path, "releases", s.Live.Release), "HUGO_ENV=production",
			} {
				if !strings.Contains(env, want+"\n") {
					t.Errorf("env lacks %s:\n%s", want, env)
				}
			}
			// Builds yield the CPU to serving.
			if got := strings.TrimSpace(readCurrent(t, tg.path, "nice.txt")); got != "10" {
				t.Errorf("build runs at nice %s, want 10", got)
			}
			log, _ := os.ReadFile(s.Last.Log)
			if !strings.Contains(string(log), "$HOME; rm -rf / `id`") {
				t.Errorf("argument was not passed literally; log:\n%s", log)
			}
		})
	}
}

// TestFirstDeployErrors: the first deploy of a site fails in the two ways a
// new setup usually does, and both say why where a user looks. A program
// that is not installed: the status's error and output tail, and the
// release's build log, name the program, say it is not on PATH, show that
// PATH and what to do (on main the log held only "$ no-such-builder-xyz",
// since a program that never started writes nothing). A remote that
// refuses the connection: the status's error carries git's own message;
// there is no release yet, so no build log.
func TestFirstDeployErrors(t *testing.T) {
	t.Run("program not found", func(t *testing.T) {
		r := newRemote(t)
		tip := r.commit(map[string]string{"index.html": "hello"})
		tg := start(t, Config{Remote: r.bare, Repo: "octocat/blog", Commands: [][]string{{"no-such-builder-xyz", "build"}}})
		s := tg.waitResult("error", tip)
		const notFound = `exec: "no-such-builder-xyz": executable file not found in $PATH`
		if !strings.Contains(s.Last.Error, notFound) {
			t.Errorf("last error = %q, want it to contain %q", s.Last.Error, notFound)
		}
		wantLine := notFound + " (PATH=" + os.Getenv("PATH") + "): install it where the user Caddy runs as finds it, or write its full path in command"
		if !strings.Contains(s.Last.OutputTail, wantLine) {
			t.Errorf("output tail = %q, want it to contain %q", s.Last.OutputTail, wantLine)
		}
		b, err := os.ReadFile(s.Last.Log)
		if err != nil {
			t.Fatalf("reading the build log: %v", err)
		}
		if want := "$ no-such-builder-xyz build\n" + wantLine + "\n"; !strings.Contains(string(b), want) {
			t.Errorf("build log %s = %q, want it to contain %q", s.Last.Log, b, want)
		}
	})
	t.Run("fetch refused", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close() // nothing listens there now: the connection is refused
		tg := start(t, Config{Remote: "http://" + addr + "/octocat/blog.git", Branch: "main", Repo: "octocat/blog"})
		s := tg.waitResult("error", "")
		if s.Checked == nil || s.Checked.Outcome != OutcomeFetchFailed {
			t.Errorf("checked = %+v, want %s", s.Checked, OutcomeFetchFailed)
		}
		for _, want := range []string{"git fetch", "unable to access", addr} {
			if !strings.Contains(s.Last.Error, want) {
				t.Errorf("last error = %q, want it to contain %q", s.Last.Error, want)
			}
		}
		if s.Last.Release != "" || s.Last.Log != "" {
			t.Errorf("a fetch that failed has release %q and log %q; want none", s.Last.Release, s.Last.Log)
		}
	})
}
