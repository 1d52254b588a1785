package e2e

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemo runs the demo as the README tells users to: it starts the demo,
// waits for the site, runs the push command the demo prints, checks that the
// post is live at the readable URL push prints, and stops the demo with
// Ctrl-C (SIGINT), which must remove its folder. The demo's first line is
// words, not JSON (Caddy's log goes to a file), and no line on its screen
// is JSON. With hugo, the demo compiles Caddy itself, as on a first run
// (its binary cache is in the test's TMPDIR; Go's build cache makes that a
// link), and must say so before and how long it took after. Without hugo,
// it runs the Caddy given with -caddy, must say that hugo is missing and
// deploy the plain HTML site instead.
func TestDemo(t *testing.T) {
	gitPath, err := exec.LookPath("git")
	if err != nil {
		t.Fatal("git is required:", err)
	}
	t.Run("hugo", func(t *testing.T) {
		requireHugo(t)
		runDemo(t, demoRun{
			path: os.Getenv("PATH"), firstPage: "Built by hugo from commit",
			compiles: true, post: `http://127\.0\.0\.1:[0-9]+/posts/posted-by-the-demo-test/`,
		})
	})
	t.Run("html without hugo", func(t *testing.T) {
		// A PATH holding git and nothing else: no hugo.
		bin := t.TempDir()
		if err := os.Symlink(gitPath, filepath.Join(bin, "git")); err != nil {
			t.Fatal(err)
		}
		runDemo(t, demoRun{
			path: bin, args: []string{"-caddy", caddyBin}, firstPage: "A plain HTML site", notice: "hugo is not installed",
			post: `http://127\.0\.0\.1:[0-9]+/#posted-by-the-demo-test`,
		})
	})
}

// demoRun is how runDemo runs the demo and what it expects.
type demoRun struct {
	path      string   // PATH
	args      []string // the demo's flags
	firstPage string   // what the first deploy's page shows
	notice    string   // what the output must say, if not empty
	compiles  bool     // the demo compiles Caddy
	post      string   // a regular expression of the post's URL
}

// goEnv is the Go toolchain's caches and settings, for a demo that runs "go
// build" with HOME elsewhere: without them it would compile all of Caddy
// again, into an empty cache.
func goEnv(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOCACHE", "GOMODCACHE", "GOENV", "GOFLAGS", "CGO_ENABLED").Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	var env []string
	for i, v := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		env = append(env, []string{"GOCACHE", "GOMODCACHE", "GOENV", "GOFLAGS", "CGO_ENABLED"}[i]+"="+v)
	}
	return env
}

// demoIntro is the demo's first line (cmd/demo's intro).
const demoIntro = "caddy-github-webhook demo: Caddy deploys a git repository on every signed push; here a local one, with no GitHub account and no network."

// runDemo runs the demo from the module root as r says.
func runDemo(t *testing.T, r demoRun) {
	tmp := t.TempDir()
	env := append(home(t), "PATH="+r.path, "TMPDIR="+tmp)
	if r.compiles {
		env = append(env, goEnv(t)...)
	}
	demo := exec.Command(demoBin, r.args...)
	demo.Dir = root
	demo.Env = env
	stdout, err := demo.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	output := new(syncBuffer)
	demo.Stderr = output
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	var screen syncBuffer // its standard output only
	lines := make(chan string, 1000)
	exited := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			output.Write([]byte(sc.Text() + "\n"))
			screen.Write([]byte(sc.Text() + "\n"))
			select {
			case lines <- sc.Text():
			default:
			}
		}
		io.Copy(io.Discard, stdout)
		close(lines)
		exited <- demo.Wait()
	}()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			demo.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("the demo's output:\n%s", output.String())
		}
	})

	// The site's URL and the push command, as printed.
	liveRE := regexp.MustCompile(`^The demo site is live \(deployed in [0-9.]+s\): (http://127\.0\.0\.1:[0-9]+/)$`)
	pushRE := regexp.MustCompile(`^    go run \./cmd/demo push -dir (\S+) "My second post"$`)
	var url, dir string
	wait := 3 * time.Minute
	if r.compiles {
		wait = 10 * time.Minute
	}
	timeout := time.After(wait)
	for url == "" || dir == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatal("the demo ended before printing the site and the push command")
			}
			if m := liveRE.FindStringSubmatch(line); m != nil {
				url = m[1]
			}
			if m := pushRE.FindStringSubmatch(line); m != nil {
				dir = m[1]
			}
		case <-timeout:
			t.Fatalf("no site and push command within %v", wait)
		}
	}
	first, _, _ := strings.Cut(screen.String(), "\n")
	if first != demoIntro {
		t.Errorf("the demo's first line is %q, want %q", first, demoIntro)
	}
	for line := range strings.Lines(output.String()) {
		if strings.HasPrefix(line, "{") {
			t.Errorf("the demo shows JSON: %s", line)
			break
		}
	}
	compileRE := regexp.MustCompile(`(?m)^Compiling Caddy with this module, once for these sources \(about [0-9]+ minutes.*\) \.* done in [0-9hms.]+$`)
	if compiled := compileRE.MatchString(screen.String()); compiled != r.compiles {
		t.Errorf("the demo says it compiled Caddy: %v, want %v", compiled, r.compiles)
	}
	if !strings.HasPrefix(dir, tmp) {
		t.Errorf("the demo's folder %s is not in TMPDIR %s", dir, tmp)
	}
	if err := pageShows(url, r.firstPage); err != nil {
		t.Fatalf("first deploy: %v", err)
	}
	if r.notice != "" && !strings.Contains(output.String(), r.notice) {
		t.Errorf("the demo's output does not say %q", r.notice)
	}

	// The printed command, with the built demo for "go run ./cmd/demo".
	const title = "Posted by the demo test"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	push := exec.CommandContext(ctx, demoBin, "push", "-dir", dir, title)
	push.Dir = root
	push.Env = env
	out, err := push.CombinedOutput()
	if err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	live := regexp.MustCompile(`(?m)^live after [0-9.]+s: (` + r.post + `)$`).FindSubmatch(out)
	if !strings.Contains(string(out), "202") || live == nil {
		t.Errorf("push's output lacks the 202 answer or the live line with the post's URL (%s):\n%s", r.post, out)
	}
	if err := pageShows(url, title); err != nil {
		t.Fatalf("after push: %v", err)
	}
	if live != nil {
		if err := pageShows(string(live[1]), title); err != nil {
			t.Errorf("the post's URL: %v", err)
		}
	}
	// The demo shows the delivery and the deploy as they happen.
	waitUntil(t, 10*time.Second, "the demo to show the delivery", func() error {
		if !strings.Contains(output.String(), "push event, answered 202 queued") {
			return io.EOF
		}
		return nil
	})

	// Ctrl-C ends the demo cleanly and removes its folder.
	stopped = true
	if err := demo.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("the demo exited with %v after Ctrl-C", err)
		}
	case <-time.After(30 * time.Second):
		demo.Process.Kill()
		<-exited
		t.Fatal("the demo did not exit within 30s of Ctrl-C")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the demo's folder %s is still there after Ctrl-C (%v)", dir, err)
	}
	if _, _, err := get(url); err == nil {
		t.Errorf("the site still answers after the demo ended")
	}
}
