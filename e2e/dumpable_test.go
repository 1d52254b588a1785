package e2e

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nobody is the unprivileged user that TestBuildCannotReadCaddysEnvironment
// runs Caddy as, as Caddy's own packages run it (as the user "caddy").
const nobody = 65534

// TestBuildCannotReadCaddysEnvironment runs the Caddy binary as an
// unprivileged user, with the webhook secret in its environment, and a build
// (no sandbox) that reads its parent's /proc/<pid>/environ and writes what
// it got into the site. The served file shows the build found Caddy, and
// does not show the secret: Caddy made itself non-dumpable, so a build of
// the same user cannot read its environment. The build's own environment
// lacks the secret's variable too.
func TestBuildCannotReadCaddysEnvironment(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run Caddy as another, unprivileged user: root reads any process's environment, dumpable or not")
	}
	const port = 9191
	site := fmt.Sprintf("http://127.0.0.1:%d/", port)
	rem := newRemote(t, "html")
	env := home(t)
	path := filepath.Join(t.TempDir(), "site")
	caddyfile := siteCaddyfile(port, path, rem.bare, "site",
		"command sh -c `cat /proc/$PPID/cmdline | tr '\\0' ' ' > parent.txt; cat /proc/$PPID/environ 2>&1 | tr '\\0' '\\n' > environ.txt; env > env.txt; true`",
		"timeout 1m")
	config := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(config, []byte(caddyfile), 0o644); err != nil {
		t.Fatal(err)
	}
	// Everything the test made is the unprivileged user's, as it would be
	// on a server: the remote, Caddy's home, the site's folder.
	giveToNobody(t, filepath.Dir(config))
	giveToNobody(t, filepath.Dir(path))
	giveToNobody(t, filepath.Dir(rem.bare))
	for _, kv := range env {
		if h, ok := strings.CutPrefix(kv, "HOME="); ok {
			giveToNobody(t, h)
		}
	}
	if err := os.Chmod(filepath.Dir(caddyBin), 0o755); err != nil {
		t.Fatal(err)
	}

	runCaddyAs(t, config, env, nobody)
	waitUntil(t, time.Minute, "the first deploy to go live", func() error { return pageShows(site+"parent.txt", "caddy") })

	_, parent, _ := get(site + "parent.txt")
	if !strings.Contains(parent, "run --config") {
		t.Fatalf("the build's parent is %q, not Caddy: the test does not test what it says", parent)
	}
	for _, file := range []string{"environ.txt", "env.txt"} {
		code, body, err := get(site + file)
		if err != nil || code != 200 {
			t.Fatalf("GET %s: %d %v", file, code, err)
		}
		if strings.Contains(body, secret) {
			t.Errorf("the build read the webhook secret through %s:\n%s", file, body)
		}
	}
	if _, environ, _ := get(site + "environ.txt"); strings.Contains(environ, "HOME=") {
		t.Errorf("the build read Caddy's environment through /proc:\n%s", environ)
	}
}

// runCaddyAs runs "caddy run --config config" with env as user uid (group
// uid too), until the test ends. It returns once the admin endpoint answers.
func runCaddyAs(t *testing.T, config string, env []string, uid uint32) *caddyProc {
	t.Helper()
	p := &caddyProc{t: t, out: new(syncBuffer), done: make(chan struct{}), config: config, env: env}
	p.cmd = exec.Command(caddyBin, "run", "--config", config)
	p.cmd.Env = env
	p.cmd.Dir = filepath.Dir(config)
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("caddy's output:\n%s", p.out.String())
		}
	})
	waitUntil(t, 30*time.Second, "caddy's admin endpoint to answer", func() error {
		select {
		case <-p.done:
			t.Fatalf("caddy exited at start: %v\n%s", p.err, p.out.String())
		default:
		}
		_, _, err := get("http://" + adminAddr + "/config/")
		return err
	})
	return p
}

// giveToNobody makes dir and everything under it the unprivileged user's,
// and lets that user through dir's parent (t.TempDir's parent is private).
func giveToNobody(t *testing.T, dir string) {
	t.Helper()
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, nobody, nobody)
	})
	if err != nil {
		t.Fatal(err)
	}
}
