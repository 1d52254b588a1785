package deployer

import (
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
