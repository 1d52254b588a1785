package deployer

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A build over its memory cap fails with an error that names the cap,
// and one held at its CPU cap past the deploy's timeout says it was
// capped. Where cgroup v2 cannot make caps (cgroup
// v1 or a hybrid hierarchy without the controllers, a cgroup Caddy may
// not write), a configuration with limits is refused at once, saying
// what is missing, and nothing runs.
func TestBuildOverItsCapFails(t *testing.T) {
	caps := &Limits{CPU: 0.05, Memory: 32 << 20}
	if err := limitsAvailable(caps); err != nil {
		_, nerr := New(Config{Path: filepath.Join(t.TempDir(), "site"), Remote: "/nowhere", Repo: "octocat/blog",
			Commands: [][]string{{"true"}}, Limits: caps}, nil)
		if nerr == nil || !strings.HasPrefix(nerr.Error(), "limits: ") || !strings.Contains(nerr.Error(), "cgroup") {
			t.Fatalf("New with limits where caps cannot be made: %v, want a refusal that says why", nerr)
		}
		t.Logf("caps cannot be made on this machine; refused with: %v", nerr)
		return
	}
	t.Run("memory", func(t *testing.T) {
		r := newRemote(t)
		tip := r.commit(map[string]string{"index.html": "small"})
		tg := start(t, Config{Remote: r.bare, Repo: "octocat/blog", Limits: &Limits{Memory: 32 << 20},
			// A string doubled up to 256 MiB.
			Commands: [][]string{{"awk", `BEGIN { s = "x"; while (length(s) < 268435456) s = s s; if (ENVIRON["DEPLOY_COMMIT"] == "") print s }`}}})
		s := tg.waitResult("error", tip)
		if !strings.Contains(s.Last.Error, "memory cap") || !strings.Contains(s.Last.Error, "limits memory 33554432 bytes") {
			t.Errorf("error %q, want it to name the memory cap", s.Last.Error)
		}
	})
	t.Run("cpu", func(t *testing.T) {
		r := newRemote(t)
		tip := r.commit(map[string]string{"index.html": "busy"})
		tg := start(t, Config{Remote: r.bare, Repo: "octocat/blog", Limits: &Limits{CPU: 0.05}, Timeout: 3 * time.Second,
			Commands: [][]string{{"sh", "-c", "while :; do :; done"}}})
		s := tg.waitResult("error", tip)
		if !strings.Contains(s.Last.Error, "limits cpu 0.05") {
			t.Errorf("error %q, want it to name the CPU cap", s.Last.Error)
		}
	})
}
