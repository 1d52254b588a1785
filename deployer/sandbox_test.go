package deployer

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// requireBwrap skips t on a host without bubblewrap.
func requireBwrap(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("bwrap"); err != nil {
		t.Skip("bwrap is not installed, so sandboxed builds cannot run; CI installs it: apt-get install bubblewrap")
	}
}

// outsideTmp returns a fresh folder that is not under /tmp, removed when
// the test ends. The sandbox gives commands a private /tmp: a target or a
// secret under the host's /tmp would be out of sight whatever else the
// sandbox does, and the test would prove nothing.
func outsideTmp(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "deployer-sandbox-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// processesWith returns the processes whose command line holds all of args
// in a row (a zombie counts as gone).
func processesWith(args ...string) []int {
	want := strings.Join(args, "\x00") + "\x00"
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !strings.Contains(string(b), want) || !alive(pid) {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// sandboxAttack is a build that tries, from inside the sandbox, each way
// out that issue 9 found, and writes what it got into public/, then builds
// the site. $0 is the hidden secret file, $1 a file beside it that is not
// hidden, $2 a name for a file in /tmp, $3 a file in a hidden folder. Every attempt may fail: the script
// goes on.
const sandboxAttack = `
out=public
mkdir -p $out
root=$DEPLOY_RELEASE/../..

# Root's way out (these tests run as root): undo the mounts that hide and
# protect, then make the host's file system writable.
for m in "$0" /tmp $root/cache.git $root; do umount -l "$m"; done > $out/umount.txt 2>&1
mount -o remount,rw,bind / >> $out/umount.txt 2>&1

# Caddy's environment and the other processes: every process it can see.
for p in /proc/[0-9]*; do
	echo "== $p"
	tr '\0' ' ' < $p/cmdline
	echo
	tr '\0' '\n' < $p/environ
done > $out/procs.txt 2>&1
cat /proc/$PPID/environ > $out/ppid-environ.txt 2>&1

# A hook in the cache repository, to run on every later fetch.
printf '#!/bin/sh\ntouch /var/tmp/hooked\n' > $root/cache.git/hooks/post-checkout 2> $out/hook.txt
echo "exit $?" >> $out/hook.txt
echo planted >> $root/cache.git/config 2>> $out/hook.txt
touch $root/cache.git/planted 2>> $out/hook.txt

# The deployer's state, other releases and logs, the secret.
ls -a $root $root/releases > $out/ls.txt 2>&1
cat $root/state.json > $out/state.txt 2>&1
cat "$0" > $out/secret.txt 2>&1
cat "$1" > $out/beside.txt 2>&1
cat "$3" > $out/hidden-dir.txt 2>&1

# Processes that would outlive the build: one in a new session. The build
# ends once both run sleep.
setsid sleep 3601 > /dev/null 2>&1 &
sleep 3601 > /dev/null 2>&1 &
until [ "$(cat /proc/[0-9]*/comm 2>/dev/null | grep -c '^sleep$')" -ge 2 ]; do :; done

# A file in /tmp, the home folder, git, the environment, the priority.
echo from-the-sandbox > /tmp/$2
cat /tmp/$2 > $out/tmp.txt 2>&1
echo kept > $HOME/kept.txt
git rev-parse HEAD > $out/head.txt 2>&1
env | sort > $out/env.txt
nice > $out/nice.txt

echo '<h1>built in the sandbox</h1>' > $out/index.html
`

// TestSandboxContainsBuild deploys a build that attacks the deployer from
// inside the sandbox. It sees no process of the host (not the test process,
// which plays Caddy), cannot write the cache repository, reads neither the
// state, nor other releases, nor the hidden secret, leaves nothing running
// once the deploy ended, writes to a /tmp of its own, gets only the
// documented environment, and still builds: its output goes live.
func TestSandboxContainsBuild(t *testing.T) {
	requireBwrap(t)
	const caddySecret = "caddy-only-7d1f0c2e"
	t.Setenv("SANDBOX_TEST_DNS_TOKEN", caddySecret) // such as a DNS provider's token for TLS
	base := outsideTmp(t)
	secretFile := filepath.Join(base, "etc", "webhook-secret")
	besideFile := filepath.Join(base, "etc", "not-secret")
	os.MkdirAll(filepath.Dir(secretFile), 0o755)
	os.WriteFile(secretFile, []byte("the-webhook-secret-0b5e"), 0o600)
	os.WriteFile(besideFile, []byte("readable-beside"), 0o644)
	hiddenDir := filepath.Join(base, "caddy-data")
	keyFile := filepath.Join(hiddenDir, "certificates", "site.key")
	os.MkdirAll(filepath.Dir(keyFile), 0o700)
	os.WriteFile(keyFile, []byte("PRIVATE KEY 5c0e"), 0o600)
	tmpName := fmt.Sprintf("sandbox-test-%d", time.Now().UnixNano())
	t.Cleanup(func() { os.Remove(filepath.Join("/tmp", tmpName)) })

	r := newRemote(t)
	first := r.commit(map[string]string{"public/index.html": "first"})
	path := filepath.Join(base, "site")
	tg := start(t, Config{Path: path, Remote: r.bare, Publish: "public"})
	tg.waitLive(first)
	firstRelease := tg.Status().Live.Release

	tip := r.commit(map[string]string{"README.md": "second"})
	tg.Update(Config{
		Path: path, Remote: r.bare, Publish: "public", Notify: tg.events.notify,
		Sandbox:  true,
		Hide:     []string{secretFile, hiddenDir},
		Env:      []string{"HUGO_ENV=production"},
		Commands: [][]string{{"sh", "-c", sandboxAttack, secretFile, besideFile, tmpName, keyFile}},
	})
	tg.Wake(ReasonManual)
	s := tg.waitResult("ok", tip)
	release := filepath.Join(path, "releases", s.Live.Release)
	if log, err := os.ReadFile(s.Last.Log); err == nil {
		t.Logf("build log:\n%s", log)
	}

	t.Run("build goes live", func(t *testing.T) {
		if got := readCurrent(t, path, "index.html"); !strings.Contains(got, "built in the sandbox") {
			t.Errorf("live index.html = %q", got)
		}
		if got := strings.TrimSpace(readCurrent(t, path, "head.txt")); got != tip {
			t.Errorf("git rev-parse HEAD in the sandbox = %q, want %s: builds can read the history", got, tip)
		}
		if got := strings.TrimSpace(readCurrent(t, path, "nice.txt")); got != "10" {
			t.Errorf("the sandboxed build runs at nice %s, want 10", got)
		}
	})
	t.Run("no process of the host", func(t *testing.T) {
		procs := readCurrent(t, path, "procs.txt") + readCurrent(t, path, "ppid-environ.txt")
		test, _ := os.Executable()
		for _, leak := range []string{caddySecret, filepath.Base(test)} {
			if strings.Contains(procs, leak) {
				t.Errorf("the build saw %q of the test process:\n%s", leak, procs)
			}
		}
		if n := strings.Count(procs, "== /proc/"); n == 0 || n > 6 {
			t.Errorf("the build saw %d processes, want its own few:\n%s", n, procs)
		}
	})
	t.Run("cache repository read-only", func(t *testing.T) {
		cache := filepath.Join(path, "cache.git")
		if _, err := os.Lstat(filepath.Join(cache, "hooks", "post-checkout")); err == nil {
			t.Errorf("the build planted a hook in the cache repository")
		}
		if _, err := os.Lstat(filepath.Join(cache, "planted")); err == nil {
			t.Errorf("the build wrote a file into the cache repository")
		}
		if cfg, _ := os.ReadFile(filepath.Join(cache, "config")); strings.Contains(string(cfg), "planted") {
			t.Errorf("the build wrote into the cache repository's config:\n%s", cfg)
		}
		if got := readCurrent(t, path, "hook.txt"); !strings.Contains(got, "Read-only file system") {
			t.Errorf("writing a hook: %q, want a read-only file system", got)
		}
	})
	t.Run("state, other releases and the secret out of sight", func(t *testing.T) {
		ls := readCurrent(t, path, "ls.txt")
		for _, name := range []string{"state.json", "history.jsonl", ".lock", "current", firstRelease} {
			if strings.Contains(ls, name) {
				t.Errorf("the build saw %s in the target folder:\n%s", name, ls)
			}
		}
		if !strings.Contains(ls, s.Live.Release) {
			t.Errorf("the build did not see its own release:\n%s", ls)
		}
		if got := readCurrent(t, path, "state.txt"); strings.Contains(got, "{") {
			t.Errorf("the build read state.json: %q", got)
		}
		if got := readCurrent(t, path, "secret.txt"); strings.Contains(got, "the-webhook-secret") {
			t.Errorf("the build read the hidden secret: %q", got)
		}
		if got := readCurrent(t, path, "hidden-dir.txt"); strings.Contains(got, "PRIVATE KEY") {
			t.Errorf("the build read a file of a hidden folder: %q", got)
		}
		// Nor is the file beside it: the sandbox is an allow-list, and that
		// folder is not on it.
		if got := readCurrent(t, path, "beside.txt"); strings.Contains(got, "readable-beside") {
			t.Errorf("the build read a file outside its allow-list: %q", got)
		}
	})
	t.Run("nothing left running", func(t *testing.T) {
		// The deploy has ended (waitResult): what the build started is gone.
		if pids := processesWith("sleep", "3601"); len(pids) > 0 {
			t.Errorf("processes the build started outlived the deploy: %v", pids)
		}
	})
	t.Run("private tmp, persistent home", func(t *testing.T) {
		if _, err := os.Stat(filepath.Join("/tmp", tmpName)); err == nil {
			t.Errorf("the build's /tmp/%s reached the host's /tmp", tmpName)
		}
		if got := readCurrent(t, path, "tmp.txt"); got != "from-the-sandbox\n" {
			t.Errorf("the build could not use its /tmp: %q", got)
		}
		if b, err := os.ReadFile(filepath.Join(path, "home", "kept.txt")); err != nil || string(b) != "kept\n" {
			t.Errorf("home/kept.txt = %q, %v: HOME must be <path>/home", b, err)
		}
	})
	t.Run("only the documented environment", func(t *testing.T) {
		env := readCurrent(t, path, "env.txt")
		for _, line := range strings.Split(strings.TrimSpace(env), "\n") {
			k, _, _ := strings.Cut(line, "=")
			switch {
			case k == "PATH", k == "HOME", k == "HUGO_ENV", k == "LANG", k == "LANGUAGE", k == "TZ",
				strings.HasPrefix(k, "LC_"), strings.HasPrefix(k, "DEPLOY_"),
				k == "XDG_CACHE_HOME", k == "npm_config_cache", k == "HUGO_CACHEDIR", // the cache home
				k == "PWD", k == "SHLVL", k == "_", k == "OLDPWD", // set by sh itself
				k == "GIT_CONFIG_COUNT", k == "GIT_CONFIG_KEY_0", k == "GIT_CONFIG_VALUE_0": // safe.directory, as root
			default:
				t.Errorf("the build got %s", line)
			}
		}
		for _, want := range []string{"HOME=" + filepath.Join(path, "home"), "DEPLOY_RELEASE=" + release,
			"XDG_CACHE_HOME=" + filepath.Join(path, "cache", "xdg"),
			"DEPLOY_COMMIT=" + tip, "HUGO_ENV=production"} {
			if !strings.Contains(env, want+"\n") {
				t.Errorf("env lacks %s:\n%s", want, env)
			}
		}
	})
}

// TestSandboxKilledDeployLeavesNothing: a sandboxed build that started a
// process in a new session and then hangs is killed by the deploy timeout,
// and the process it started dies with it.
func TestSandboxKilledDeployLeavesNothing(t *testing.T) {
	requireBwrap(t)
	r := newRemote(t)
	tip := r.commit(map[string]string{"index.html": "v1"})
	tg := start(t, Config{Path: filepath.Join(outsideTmp(t), "site"), Remote: r.bare, Sandbox: true, Timeout: 3 * time.Second,
		Commands: [][]string{{"sh", "-c", "setsid sleep 3602 > /dev/null 2>&1 & sleep 3602 > /dev/null 2>&1 & echo started; exec sleep 300"}}})
	waitFor(t, "the build to start its processes", func() bool { return len(processesWith("sleep", "3602")) == 2 })
	s := tg.waitResult("error", tip)
	if !strings.Contains(s.Last.Error, "timeout") {
		t.Errorf("error = %q, want the timeout", s.Last.Error)
	}
	waitFor(t, "the build's processes to die", func() bool { return len(processesWith("sleep", "3602")) == 0 })
}

// TestSandboxWithoutBwrap: with sandbox on and no bwrap on PATH, the deploy
// fails with an error that says what to install, and the live site stays.
func TestSandboxWithoutBwrap(t *testing.T) {
	gitPath, err := exec.LookPath("git")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if err := os.Symlink(gitPath, filepath.Join(bin, "git")); err != nil {
		t.Fatal(err)
	}
	r := newRemote(t)
	tip := r.commit(map[string]string{"index.html": "v1"})
	t.Setenv("PATH", bin) // git, and nothing else
	tg := start(t, Config{Remote: r.bare, Sandbox: true, Commands: [][]string{{"true"}}})
	s := tg.waitResult("error", tip)
	if want := "sandbox: bwrap not found: install bubblewrap (apt install bubblewrap)"; !strings.Contains(s.Last.Error, want) {
		t.Errorf("error = %q, want %q", s.Last.Error, want)
	}
	if s.Live != nil {
		t.Errorf("a deploy without its sandbox went live: %+v", s.Live)
	}
}

// sandboxCacheBuild uses its cache folder and its cache home from inside the
// sandbox, and tries to write beside them.
const sandboxCacheBuild = `
out=public
mkdir -p $out gen
root=$DEPLOY_RELEASE/../..
cat gen/log > $out/seen.txt 2>/dev/null || : > $out/seen.txt
echo "$DEPLOY_COMMIT" >> gen/log
cat "$XDG_CACHE_HOME/marker" > $out/home.txt 2>&1
for d in "$XDG_CACHE_HOME" "$npm_config_cache" "$HUGO_CACHEDIR"; do
	echo "$DEPLOY_COMMIT" > "$d/marker" && echo "wrote $d"
done > $out/cache-home.txt 2>&1
for f in $root/planted $root/cache.git/planted $root/releases/planted /usr/planted; do
	touch $f 2>&1 || :
done > $out/elsewhere.txt
echo ok > $out/index.html
`

// TestSandboxCache: under the sandbox, a build reads and writes its cache
// folder and its cache home (the second build sees what the first left in
// both), and still cannot write anywhere else: <path> itself, the cache
// repository, the releases folder, the host's /usr.
func TestSandboxCache(t *testing.T) {
	requireBwrap(t)
	r := newRemote(t)
	path := filepath.Join(outsideTmp(t), "site")
	cfg := Config{Path: path, Remote: r.bare, Publish: "public", Sandbox: true, Cache: []string{"gen"},
		Commands: [][]string{{"sh", "-c", sandboxCacheBuild}}}
	c1 := r.commit(map[string]string{"README.md": "one"})
	tg := start(t, cfg)
	tg.waitLive(c1)
	c2 := r.commit(map[string]string{"README.md": "two"})
	tg.wake(ReasonManual)
	s := tg.waitLive(c2)
	if log, err := os.ReadFile(s.Last.Log); err == nil {
		t.Logf("build log:\n%s", log)
	}

	if got := readCurrent(t, path, "seen.txt"); got != c1+"\n" {
		t.Errorf("the second sandboxed build found gen/log = %q, want the first build's %q", got, c1+"\n")
	}
	if got := readCurrent(t, path, "home.txt"); got != c1+"\n" {
		t.Errorf("the second sandboxed build found the cache home's marker %q, want the first build's", got)
	}
	home := readCurrent(t, path, "cache-home.txt")
	for _, d := range []string{"xdg", "npm", "hugo"} {
		dir := filepath.Join(path, "cache", d)
		if !strings.Contains(home, "wrote "+dir+"\n") {
			t.Errorf("the build could not write its cache home %s:\n%s", dir, home)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "marker")); err != nil || string(b) != c2+"\n" {
			t.Errorf("%s/marker = %q, %v; want the second build's commit", dir, b, err)
		}
	}
	elsewhere := readCurrent(t, path, "elsewhere.txt")
	if n := strings.Count(elsewhere, "Read-only file system"); n != 4 {
		t.Errorf("writes beside the caches: %d refused as read-only, want 4:\n%s", n, elsewhere)
	}
	for _, p := range []string{filepath.Join(path, "planted"), filepath.Join(path, "cache.git", "planted"),
		filepath.Join(path, "releases", "planted"), "/usr/planted"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("the sandboxed build created %s", p)
			os.Remove(p)
		}
	}
}

// sandboxPrivileges is a build that, run by Caddy as root, tries what root
// could: leave a setuid shell in the release, read /etc/shadow.
const sandboxPrivileges = `
out=public
mkdir -p $out
id -u > $out/uid.txt
cp /bin/sh $out/sh && chmod 4755 $out/sh
stat -c '%u %a' $out/sh > $out/sh-owner.txt
cat /etc/shadow > $out/shadow.txt 2>&1
cat /etc/gshadow >> $out/shadow.txt 2>&1
echo ok > $out/index.html
`

// TestSandboxUnprivilegedBuild: with Caddy as root (the test runs as
// root), a sandboxed build runs as nobody on the host: the setuid shell it
// makes belongs to nobody, not root (and once the build ended, the release
// is root's again, which clears the bit), and /etc/shadow is out of reach.
// Before, the build ran as root without capabilities: its chmod u+s made a
// setuid-root shell, and it read /etc/shadow.
func TestSandboxUnprivilegedBuild(t *testing.T) {
	requireBwrap(t)
	if os.Geteuid() != 0 {
		t.Skip("the build runs as the unprivileged user only when Caddy runs as root")
	}
	shadow, err := os.ReadFile("/etc/shadow")
	if err != nil || len(shadow) == 0 {
		t.Skipf("no /etc/shadow to protect here: %v", err)
	}
	r := newRemote(t)
	tip := r.commit(map[string]string{"README.md": "one"})
	path := filepath.Join(outsideTmp(t), "site")
	tg := start(t, Config{Path: path, Remote: r.bare, Publish: "public", Sandbox: true, SandboxNetwork: NetworkNone,
		Commands: [][]string{{"sh", "-c", sandboxPrivileges}}})
	s := tg.waitLive(tip)
	if log, err := os.ReadFile(s.Last.Log); err == nil {
		t.Logf("build log:\n%s", log)
	}
	if got := strings.TrimSpace(readCurrent(t, path, "uid.txt")); got != "65534" {
		t.Errorf("the build ran as uid %s, want 65534 (nobody)", got)
	}
	if got := strings.TrimSpace(readCurrent(t, path, "sh-owner.txt")); got != "65534 4755" {
		t.Errorf("the build's setuid shell: owner and mode %q, want 65534 4755 (setuid nobody, not root)", got)
	}
	fi, err := os.Stat(filepath.Join(path, "current", "sh"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 || owner(filepath.Join(path, "current", "sh")) != 0 {
		t.Errorf("the live sh: mode %v, owner %d; want root's, without setuid", fi.Mode(), owner(filepath.Join(path, "current", "sh")))
	}
	got := readCurrent(t, path, "shadow.txt")
	if strings.Contains(got, "root:") || !strings.Contains(got, "Permission denied") && strings.TrimSpace(got) != "" {
		t.Errorf("the build read /etc/shadow or /etc/gshadow: %q", got)
	}
}

// sandboxNeighbour is a build of site A that reads what it can of site B
// ($0, its path), of B's secret and token files ($1, $2), and of a storage
// folder of Caddy's outside the allow-list ($3, a key in it).
const sandboxNeighbour = `
out=public
mkdir -p $out
for f in "$0/state.json" "$0/cache.git/config" "$0/current/index.html" "$1" "$2" "$3"; do
	cat "$f" 2>&1
done > $out/read.txt
ls -a "$0" "$0/releases" "$(dirname "$3")" > $out/ls.txt 2>&1
cat "$0"/releases/*.log >> $out/read.txt 2>&1
echo ok > $out/index.html
`

// TestSandboxOtherSiteOutOfSight: site A's sandboxed build sees nothing of
// site B, another deployer on the same host (its state, cache repository,
// live release, logs, and the files its secret and token come from), nor a
// storage folder (TLS keys) outside the allow-list, though none of these
// is in A's Hide list. Before, the sandbox was the host's / minus A's own
// list, and A's build read all of them.
func TestSandboxOtherSiteOutOfSight(t *testing.T) {
	requireBwrap(t)
	base := outsideTmp(t)
	pathB := filepath.Join(base, "site-b")
	secretB := filepath.Join(base, "etc-b", "webhook-secret")
	tokenB := filepath.Join(base, "etc-b", "token")
	keyFile := filepath.Join(base, "storage", "certificates", "example.com.key")
	for f, v := range map[string]string{secretB: "secret-of-b-4e1a", tokenB: "token-of-b-77c2", keyFile: "PRIVATE KEY of storage 9d0f"} {
		os.MkdirAll(filepath.Dir(f), 0o755)
		if err := os.WriteFile(f, []byte(v), 0o644); err != nil { // readable by anyone: only the sandbox keeps it out
			t.Fatal(err)
		}
	}
	rb := newRemote(t)
	tipB := rb.commit(map[string]string{"index.html": "site-b-live-page"})
	tgB := start(t, Config{Path: pathB, Remote: rb.bare, Commands: [][]string{{"sh", "-c", "echo built-b"}}})
	tgB.waitLive(tipB)

	ra := newRemote(t)
	tipA := ra.commit(map[string]string{"README.md": "a"})
	pathA := filepath.Join(base, "site-a")
	tgA := start(t, Config{Path: pathA, Remote: ra.bare, Publish: "public", Sandbox: true, SandboxNetwork: NetworkNone,
		Commands: [][]string{{"sh", "-c", sandboxNeighbour, pathB, secretB, tokenB, keyFile}}})
	s := tgA.waitLive(tipA)
	if log, err := os.ReadFile(s.Last.Log); err == nil {
		t.Logf("build log:\n%s", log)
	}
	read := readCurrent(t, pathA, "read.txt")
	for _, leak := range []string{tipB, "[core]", "site-b-live-page", "built-b", "secret-of-b", "token-of-b", "PRIVATE KEY"} {
		if strings.Contains(read, leak) {
			t.Errorf("site A's build read %q of site B or of the storage:\n%s", leak, read)
		}
	}
	// The folders are not there at all: each ls fails.
	if ls := readCurrent(t, pathA, "ls.txt"); strings.Count(ls, "No such file or directory") != 3 {
		t.Errorf("site A's build listed site B's folders or the storage:\n%s", ls)
	}
}

// sandboxProbe is a build that lists its network interfaces and default
// routes, and tries to connect to the host's loopback and to the gateway
// (which pasta, by default, maps to the host's loopback) on $PROBE_PORT.
const sandboxProbe = `
out=public
mkdir -p $out
tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort > $out/ifaces.txt
awk 'NR > 1 && $2 == "00000000" { print $1 }' /proc/net/route > $out/routes.txt
for a in 127.0.0.1 $PROBE_GATEWAY; do
	if timeout 5 bash -c 'exec 3<>/dev/tcp/$0/$1' "$a" "$PROBE_PORT" 2>/dev/null; then echo "connected $a"; else echo "failed $a"; fi
done > $out/connect.txt
echo ok > $out/index.html
`

// hostGateway returns the host's IPv4 default gateway, or "".
func hostGateway(t *testing.T) string {
	b, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 2 && f[1] == "00000000" {
			v, err := strconv.ParseUint(f[2], 16, 32)
			if err != nil {
				return ""
			}
			return fmt.Sprintf("%d.%d.%d.%d", v&0xff, v>>8&0xff, v>>16&0xff, v>>24)
		}
	}
	return ""
}

// loopbackListener listens on the host's 127.0.0.1, as Caddy's admin
// endpoint does, and counts the connections it accepts.
func loopbackListener(t *testing.T) (port int, accepted *atomic.Int64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted = &atomic.Int64{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, accepted
}

// TestSandboxNoHostLoopback: a sandboxed build with a network (the
// default) gets an interface and a default route of its own from pasta or
// slirp4netns, but cannot connect to a listener on the host's 127.0.0.1
// (Caddy's admin endpoint is one), neither directly nor through the
// gateway's address. Before, the build shared the host's network and
// connected. slirp4netns is tried with pasta off PATH.
func TestSandboxNoHostLoopback(t *testing.T) {
	requireBwrap(t)
	for _, helper := range []string{"pasta", "slirp4netns"} {
		t.Run(helper, func(t *testing.T) {
			helperPath, err := exec.LookPath(helper)
			if err != nil {
				t.Skipf("%s is not installed; CI installs it: apt-get install passt slirp4netns", helper)
			}
			if helper == "slirp4netns" {
				// A PATH with slirp4netns and without pasta. The build's
				// own commands name their folders.
				bin := t.TempDir()
				for _, name := range []string{"git", "bwrap", "setpriv", "nsenter"} {
					p, err := exec.LookPath(name)
					if err != nil {
						t.Skip(err)
					}
					os.Symlink(p, filepath.Join(bin, name))
				}
				os.Symlink(helperPath, filepath.Join(bin, helper))
				t.Setenv("PATH", bin)
			}
			port, accepted := loopbackListener(t)
			gateway := hostGateway(t)
			r := newRemote(t)
			tip := r.commit(map[string]string{"README.md": "one"})
			path := filepath.Join(outsideTmp(t), "site")
			tg := start(t, Config{Path: path, Remote: r.bare, Publish: "public", Sandbox: true,
				Env:      []string{"PROBE_PORT=" + strconv.Itoa(port), "PROBE_GATEWAY=" + gateway, "PATH=/usr/bin:/bin"},
				Commands: [][]string{{"/bin/sh", "-c", sandboxProbe}}})
			s := tg.waitResult("ok", tip)
			if log, err := os.ReadFile(s.Last.Log); err == nil {
				t.Logf("build log:\n%s", log)
			}
			connect := readCurrent(t, path, "connect.txt")
			if strings.Contains(connect, "connected") || accepted.Load() > 0 {
				t.Errorf("the build reached the host's loopback (%d connections):\n%s", accepted.Load(), connect)
			}
			if !strings.Contains(connect, "failed 127.0.0.1") {
				t.Errorf("the probe did not run:\n%s", connect)
			}
			ifaces := strings.Fields(readCurrent(t, path, "ifaces.txt"))
			if len(ifaces) < 2 || !slices.Contains(ifaces, "lo") {
				t.Errorf("interfaces %q, want lo and the helper's", ifaces)
			}
			if routes := strings.Fields(readCurrent(t, path, "routes.txt")); len(routes) == 0 {
				t.Errorf("no default route in the build's network namespace (interfaces %q)", ifaces)
			}
		})
	}
}

// TestSandboxNetworkNone: with SandboxNetwork none, the build's namespace
// holds a loopback and nothing else: no route out, and no host loopback.
// Before, the build had the host's interfaces.
func TestSandboxNetworkNone(t *testing.T) {
	requireBwrap(t)
	port, accepted := loopbackListener(t)
	r := newRemote(t)
	tip := r.commit(map[string]string{"README.md": "one"})
	path := filepath.Join(outsideTmp(t), "site")
	tg := start(t, Config{Path: path, Remote: r.bare, Publish: "public", Sandbox: true, SandboxNetwork: NetworkNone,
		Env:      []string{"PROBE_PORT=" + strconv.Itoa(port)},
		Commands: [][]string{{"sh", "-c", sandboxProbe}}})
	tg.waitLive(tip)
	if ifaces := strings.Fields(readCurrent(t, path, "ifaces.txt")); !slices.Equal(ifaces, []string{"lo"}) {
		t.Errorf("interfaces %q, want lo alone", ifaces)
	}
	if routes := strings.TrimSpace(readCurrent(t, path, "routes.txt")); routes != "" {
		t.Errorf("default routes %q, want none", routes)
	}
	if connect := readCurrent(t, path, "connect.txt"); !strings.Contains(connect, "failed 127.0.0.1") || accepted.Load() > 0 {
		t.Errorf("the build reached the host's loopback:\n%s", connect)
	}
}

// BenchmarkSandboxStart times one sandboxed command (true) from start to
// end: "before" with the sandbox's options before the allow-list and the
// network namespace (the host's / read-only, the host's network), "none"
// with the allow-list and a network namespace of its own without a helper
// (SandboxNetwork none), then with pasta and with slirp4netns attaching
// the outbound network. The difference to "before" is what the sandbox's
// network costs each command:
//
//	go test -run '^$' -bench BenchmarkSandboxStart -benchtime 20x -count 5 ./deployer
func BenchmarkSandboxStart(b *testing.B) {
	if _, err := exec.LookPath("bwrap"); err != nil {
		b.Skip("bwrap is not installed")
	}
	dir, err := os.MkdirTemp("/var/tmp", "deployer-sandbox-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "site")
	release := filepath.Join(path, "releases", "r1")
	for _, d := range []string{release, filepath.Join(path, "cache.git"), filepath.Join(path, "cache")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	b.Run("before", func(b *testing.B) {
		bwrap, _ := exec.LookPath("bwrap")
		argv := []string{bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
			"--unshare-pid", "--die-with-parent", "--cap-drop", "ALL", "--chdir", release, "--", "true"}
		for b.Loop() {
			if err := run(ctx, release, []string{"PATH=" + defaultPath}, io.Discard, io.Discard, nil, argv...); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, helper := range []string{"none", "pasta", "slirp4netns"} {
		b.Run(helper, func(b *testing.B) {
			cfg := Config{Path: path, SandboxNetwork: NetworkNone}
			s, err := newSandbox(ctx, cfg, path, filepath.Join(path, cacheName), release, filepath.Join(path, "cache"))
			if err != nil {
				b.Fatal(err)
			}
			if helper != "none" {
				if s.net, err = exec.LookPath(helper); err != nil {
					b.Skip(err)
				}
				if helper == "slirp4netns" && os.Geteuid() != 0 {
					s.nsenter, _ = exec.LookPath("nsenter")
				}
			}
			env := s.env(cfg, nil)
			for b.Loop() {
				var out bytes.Buffer
				if err := s.run(ctx, release, env, &out, &out, nil, []string{"true"}); err != nil {
					b.Fatalf("%v: %s", err, out.String())
				}
			}
			s.restore()
		})
	}
}
