package e2e

import (
	"io/fs"
	"os"
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
	s := newSite(t, "site")
	site := s.url("/")
	rem := newRemote(t, "html")
	env := home(t)
	path := s.path
	caddyfile := s.caddyfile(rem.Bare, "site",
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
	giveToNobody(t, filepath.Dir(rem.Bare))
	for _, kv := range env {
		if h, ok := strings.CutPrefix(kv, "HOME="); ok {
			giveToNobody(t, h)
		}
	}
	if err := os.Chmod(filepath.Dir(caddyBin), 0o755); err != nil {
		t.Fatal(err)
	}

	runCaddyWith(t, s, config, env, &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}})
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
