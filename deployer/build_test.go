package deployer

import (
	"net"
	"os"
	"strings"
	"testing"
)

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
