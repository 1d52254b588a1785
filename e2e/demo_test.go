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
// page changed, and stops the demo with Ctrl-C (SIGINT), which must remove
// its folder. Without hugo, the demo must say so and deploy the plain HTML
// site instead.
func TestDemo(t *testing.T) {
	gitPath, err := exec.LookPath("git")
	if err != nil {
		t.Fatal("git is required:", err)
	}
	t.Run("hugo", func(t *testing.T) {
		requireHugo(t)
		runDemo(t, os.Getenv("PATH"), "Built by hugo from commit", "")
	})
	t.Run("html without hugo", func(t *testing.T) {
		// A PATH holding git and nothing else: no hugo.
		bin := t.TempDir()
		if err := os.Symlink(gitPath, filepath.Join(bin, "git")); err != nil {
			t.Fatal(err)
		}
		runDemo(t, bin, "A plain HTML site", "hugo is not installed")
	})
}

// runDemo runs the demo from the module root with PATH set to path. Its
// first page must show firstPage, and its output must say notice.
func runDemo(t *testing.T, path, firstPage, notice string) {
	tmp := t.TempDir()
	env := append(home(t), "PATH="+path, "TMPDIR="+tmp)
	demo := exec.Command(demoBin)
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
	lines := make(chan string, 1000)
	exited := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			output.Write([]byte(sc.Text() + "\n"))
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
	timeout := time.After(3 * time.Minute)
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
			t.Fatal("no site and push command within 3m")
		}
	}
	if !strings.HasPrefix(dir, tmp) {
		t.Errorf("the demo's folder %s is not in TMPDIR %s", dir, tmp)
	}
	if err := pageShows(url, firstPage); err != nil {
		t.Fatalf("first deploy: %v", err)
	}
	if notice != "" && !strings.Contains(output.String(), notice) {
		t.Errorf("the demo's output does not say %q", notice)
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
	if !strings.Contains(string(out), "202") || !strings.Contains(string(out), "live after") {
		t.Errorf("push's output lacks the 202 answer or the live line:\n%s", out)
	}
	if err := pageShows(url, title); err != nil {
		t.Fatalf("after push: %v", err)
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
