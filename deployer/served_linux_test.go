//go:build linux

package deployer

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A FIFO that a build leaves in what goes live fails the deploy with an
// error that names it and its kind, and the live site stays as it was: each
// GET of a FIFO would pin a file server's thread in open(2) for good. On
// main the FIFO went live. Sandboxed builds too: bwrap lets a build mkfifo
// in its release.
func TestFIFOFromBuildNeverGoesLive(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sandbox bool
		publish string
		command []string
		want    string
	}{
		{"at the root", false, "", []string{"mkfifo", "pipe"}, `"pipe" (FIFO) cannot go live`},
		{"in the published folder", false, "public", []string{"mkfifo", "public/pipe"}, `"public/pipe" (FIFO) cannot go live`},
		{"sandboxed", true, "", []string{"mkfifo", "pipe"}, `"pipe" (FIFO) cannot go live`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := ""
			if tc.sandbox {
				requireBwrap(t)
				path = filepath.Join(outsideTmp(t), "site")
			}
			r := newRemote(t)
			first := r.commit(map[string]string{"index.html": "v1", "public/index.html": "v1"})
			tg := start(t, Config{Path: path, Remote: r.bare, Publish: tc.publish})
			live := tg.waitLive(first).Live

			tg.Update(Config{Remote: r.bare, Path: tg.path, Publish: tc.publish, Sandbox: tc.sandbox,
				Commands: [][]string{tc.command}, Notify: tg.events.notify})
			tip := r.commit(map[string]string{"index.html": "v2", "public/index.html": "v2"})
			tg.Wake(ReasonDelivery)
			s := tg.waitRefused(tip)
			if !strings.Contains(s.Last.Error, tc.want) {
				t.Errorf("error = %q, want %q", s.Last.Error, tc.want)
			}
			assertLiveUnchanged(t, tg, live, "v1", "pipe")
		})
	}
}

// A socket that a build leaves in what goes live fails the deploy in the
// same way; a folder of them is named with a count. On main they went live.
func TestSocketFromBuildNeverGoesLive(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r := newRemote(t)
	first := r.commit(map[string]string{"index.html": "v1"})
	tg := start(t, Config{Remote: r.bare})
	live := tg.waitLive(first).Live

	tg.Update(Config{Remote: r.bare, Path: tg.path, Notify: tg.events.notify,
		Env: []string{makeSocketEnv + "=sock"}, Commands: [][]string{{exe}}})
	tip := r.commit(map[string]string{"index.html": "v2"})
	tg.Wake(ReasonDelivery)
	s := tg.waitRefused(tip)
	if want := `"sock" (socket) cannot go live`; !strings.Contains(s.Last.Error, want) {
		t.Errorf("error = %q, want %q", s.Last.Error, want)
	}
	assertLiveUnchanged(t, tg, live, "v1", "sock")
}

// What a build leaves setuid or setgid goes live without those bits, the
// rest of its mode kept: a setuid copy of a shell, a setgid file, a setgid
// folder. The deploy succeeds (a setgid folder is common and harmless to
// serve without the bit). On main the bits went live.
func TestSetuidFromBuildGoesLiveWithoutTheBits(t *testing.T) {
	r := newRemote(t)
	first := r.commit(map[string]string{"index.html": "v1"})
	tg := start(t, Config{Remote: r.bare, Commands: [][]string{
		{"cp", "/bin/sh", "suidsh"},
		{"chmod", "4755", "suidsh"},
		{"cp", "index.html", "sgid.txt"},
		{"chmod", "2640", "sgid.txt"},
		{"mkdir", "shared"},
		{"chmod", "3775", "shared"}, // setgid and sticky
		{"cp", "index.html", "shared/page.html"},
		{"chmod", "6711", "shared/page.html"},
	}})
	tg.waitLive(first)
	for name, want := range map[string]fs.FileMode{
		"suidsh":           0o755,
		"sgid.txt":         0o640,
		"shared":           fs.ModeDir | fs.ModeSticky | 0o775,
		"shared/page.html": 0o711,
	} {
		fi, err := os.Lstat(filepath.Join(tg.path, "current", name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode(); got != want {
			t.Errorf("current/%s has mode %v, want %v", name, got, want)
		}
	}
	if n := tg.logs.FilterMessage("cleared the setuid and setgid bits of what goes live").Len(); n != 1 {
		t.Errorf("%d log lines about cleared bits, want 1", n)
	}
}

// checkServed names every kind that cannot go live, devices too (made here
// directly: only root may mknod), and counts those past the first few.
func TestCheckServedNamesKinds(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "index.html"), []byte("x"), 0o644)
	if err := unix.Mkfifo(filepath.Join(dir, "a-pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		t.Skip("mknod of a device needs root")
	}
	// /dev/null's numbers (1, 3) and a block device's (7, 0: loop0).
	if err := unix.Mknod(filepath.Join(dir, "b-null"), unix.S_IFCHR|0o644, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(dir, "c-loop"), unix.S_IFBLK|0o644, int(unix.Mkdev(7, 0))); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(dir, "d-pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := checkServed(dir, dir, "", false)
	want := `"a-pipe" (FIFO), "b-null" (character device), "c-loop" (block device) and 1 more cannot go live`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error = %v, want %q", err, want)
	}
}

// checkServed clears setgid from folders always (a folder made in a setgid
// folder inherits the bit, git's checkout too), and reads the modes of
// files only after a build: git, the fast path and an archive never write a
// setuid or setgid file, and an lstat per file would cost nine times the
// walk.
func TestCheckServedClearsFolderBitsAlways(t *testing.T) {
	for _, built := range []bool{false, true} {
		dir := t.TempDir()
		os.Mkdir(filepath.Join(dir, "shared"), 0o755)
		os.WriteFile(filepath.Join(dir, "shared", "run"), []byte("x"), 0o755)
		os.Chmod(filepath.Join(dir, "shared"), fs.ModeSetgid|0o755)
		os.Chmod(filepath.Join(dir, "shared", "run"), fs.ModeSetuid|0o755)
		cleared, n, err := checkServed(dir, dir, "", built)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"shared"}
		if built {
			want = append(want, "shared/run")
		}
		if !slices.Equal(cleared, want) || n != len(want) {
			t.Errorf("built %v: cleared %q (%d), want %q", built, cleared, n, want)
		}
		if fi, _ := os.Stat(filepath.Join(dir, "shared")); fi.Mode() != fs.ModeDir|0o755 {
			t.Errorf("built %v: shared has mode %v", built, fi.Mode())
		}
	}
}
