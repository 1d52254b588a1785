package deployer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Caddy's own Debian package runs Caddy as the user caddy, not root. The
// tests below run the sandbox as such a user: the test binary again, as
// nobody (uid 65534), started by this one when it runs as root (as CI
// does). As an ordinary user, the sandbox tests themselves run as that
// user: go test -run TestSandbox ./deployer.

// ordinaryUser is the user that the child test binary runs as.
const ordinaryUser = 65534

// hostLacksEnv tells the test binary, run again, that it is the child of
// TestSandboxOrdinaryUserHostLacks.
const hostLacksEnv = "DEPLOYER_TEST_SANDBOX_HOST_LACKS"

// asOrdinaryUser returns a command that runs this test binary again with
// args, as ordinaryUser, with a HOME and a TMPDIR of its own, and with
// wrap (a command line that ends by running the rest) before setpriv. It
// skips t unless the test runs as root with setpriv at hand.
func asOrdinaryUser(t *testing.T, wrap []string, args ...string) *exec.Cmd {
	t.Helper()
	requireBwrap(t)
	if os.Geteuid() != 0 {
		t.Skip("starts the test binary again as nobody, which takes root; as an ordinary user, the sandbox tests themselves run as one")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv is not installed (util-linux), which runs the test binary as nobody")
	}
	// The test binary, where nobody can run it (go test's folder is
	// root's), beside the child's HOME and TMPDIR.
	dir := outsideTmp(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "deployer.test")
	copyFile(t, self, exe)
	home, tmp := filepath.Join(dir, "home"), filepath.Join(dir, "tmp")
	for _, d := range []string{home, tmp} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, ordinaryUser, ordinaryUser); err != nil {
			t.Fatal(err)
		}
	}
	argv := append(append([]string(nil), wrap...), setpriv, "--reuid="+strconv.Itoa(ordinaryUser),
		"--regid="+strconv.Itoa(ordinaryUser), "--clear-groups", "--", exe)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, argv[0], append(argv[1:], args...)...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "TMPDIR=" + tmp, "LANG=C"}
	return cmd
}

// copyFile copies the file src to dst, executable.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSandboxAsOrdinaryUser runs the sandbox tests' core as nobody, as
// Caddy runs from its Debian package: a real sandboxed build attacks the
// deployer (TestSandboxContainsBuild), is killed with what it started
// (TestSandboxKilledDeployLeavesNothing), uses its caches and writes
// nowhere else (TestSandboxCache), reaches out through slirp4netns and
// through pasta but not the host's loopback (TestSandboxNoHostLoopback),
// and has no network with network none (TestSandboxNetworkNone). Before,
// each deploy with a network failed as an ordinary user: the helper tried
// to enter bwrap's network namespace from the build's own user namespace,
// nested in the one that owns it ("setns(CLONE_NEWNET): Operation not
// permitted"), and slirp4netns's own sandbox could not become root there.
// TestSandboxUnprivilegedBuild skips in the child: proof that it is not
// root.
func TestSandboxAsOrdinaryUser(t *testing.T) {
	core := []string{"TestSandboxContainsBuild", "TestSandboxKilledDeployLeavesNothing", "TestSandboxCache",
		"TestSandboxNoHostLoopback", "TestSandboxNetworkNone", "TestSandboxUnprivilegedBuild"}
	child := asOrdinaryUser(t, nil, "-test.run=^("+strings.Join(core, "|")+")$", "-test.v", "-test.count=1", "-test.timeout=4m")
	// The network needs /dev/net/tun open to nobody: say so, rather than
	// as the network tests' errors.
	if fi, err := os.Stat(tunDevice); err != nil {
		t.Fatalf("%v: the sandbox's network needs it (modprobe tun)", err)
	} else if fi.Mode().Perm()&0o006 != 0o006 {
		t.Fatalf("%s has mode %v: nobody cannot open it, and the sandbox's network needs it when Caddy is not root: chmod 0666 %s, as Debian's udev rule makes it (.ci/run does)", tunDevice, fi.Mode(), tunDevice)
	}
	var out bytes.Buffer
	child.Stdout, child.Stderr = &out, &out
	err := child.Run()
	if err != nil {
		t.Errorf("the sandbox tests as nobody: %v\n%s", err, out.String())
		return
	}
	got := out.String()
	for _, name := range core[:len(core)-1] {
		if !strings.Contains(got, "--- PASS: "+name+" ") {
			t.Errorf("%s did not pass as nobody:\n%s", name, got)
		}
	}
	for _, helper := range []string{"pasta", "slirp4netns"} {
		if _, err := exec.LookPath(helper); err == nil && !strings.Contains(got, "--- PASS: TestSandboxNoHostLoopback/"+helper+" ") {
			t.Errorf("TestSandboxNoHostLoopback/%s did not pass as nobody:\n%s", helper, got)
		}
	}
	if !strings.Contains(got, "--- SKIP: TestSandboxUnprivilegedBuild ") {
		t.Errorf("the child ran as root:\n%s", got)
	}
}

// hostLacksResult is what the child of TestSandboxOrdinaryUserHostLacks
// reports of a deploy.
type hostLacksResult struct {
	Network string `json:"network"`
	Result  string `json:"result"`
	Error   string `json:"error"`
	Live    bool   `json:"live"`
}

// hostLacksDeploys is the child's part: a sandboxed deploy with a network
// and one without, each reported as a line of JSON.
func hostLacksDeploys(t *testing.T) {
	for _, network := range []string{"", NetworkNone} {
		r := newRemote(t)
		tip := r.commit(map[string]string{"README.md": "one"})
		tg := start(t, Config{Path: filepath.Join(outsideTmp(t), "site"), Remote: r.bare, Sandbox: true, SandboxNetwork: network,
			Commands: [][]string{{"sh", "-c", "echo built > index.html"}}})
		last := tg.waitDeployed(tip)
		b, _ := json.Marshal(hostLacksResult{Network: network, Result: last.Result, Error: last.Error, Live: tg.Status().Live != nil})
		os.Stdout.Write(append(append([]byte("sandbox-result "), b...), '\n'))
	}
}

// TestSandboxOrdinaryUserHostLacks: as an ordinary user, on a host that
// lacks what the sandbox then needs, a sandboxed deploy fails at once with
// an error that says what is missing and what to do, and nothing goes
// live; what does not need the missing part still works (network none
// without /dev/net/tun). The test binary runs again as nobody, in a mount
// namespace whose /dev/net/tun is root's alone (mode 0600, as on some
// hosts) or missing, or in a user namespace that allows no more user
// namespaces (user.max_user_namespaces = 0, there alone).
func TestSandboxOrdinaryUserHostLacks(t *testing.T) {
	if os.Getenv(hostLacksEnv) != "" {
		hostLacksDeploys(t)
		return
	}
	const tunScript = `mount -t tmpfs -o mode=0755 tmpfs /dev/net && if [ "$0" = 0600 ]; then mknod -m 0600 /dev/net/tun c 10 200; fi && exec "$@"`
	cases := []struct {
		name string
		wrap []string
		ns   bool   // in a user namespace of its own
		want string // the error with a network
		none string // the error with network none, "" when it goes live
		// setuid puts a setuid-root copy of bwrap first on the child's PATH.
		setuid bool
	}{
		{name: "tun root's alone", wrap: []string{"unshare", "--mount", "--", "sh", "-c", tunScript, "0600"},
			want: "sandbox: Caddy's user cannot open /dev/net/tun (mode 0600, owner 0), and the builds' network helper (slirp4netns or pasta) needs it when Caddy does not run as root: give it mode 0666 as Debian's udev rule does"},
		{name: "no tun", wrap: []string{"unshare", "--mount", "--", "sh", "-c", tunScript, "none"},
			want: "sandbox: /dev/net/tun does not exist, and the builds' network helper (slirp4netns or pasta) needs it: load the tun module (modprobe tun)"},
		{name: "no user namespaces", ns: true, wrap: []string{"sh", "-c", `echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"`, "sh"},
			want: "sandbox: this host allows no user namespaces (sysctl user.max_user_namespaces = 0), which bwrap needs when Caddy does not run as root: allow them",
			none: "sandbox: this host allows no user namespaces"},
		{name: "setuid bwrap", setuid: true,
			want: "is setuid root, and makes the builds' network namespace where the network helper cannot enter it when Caddy does not run as root: use a bwrap that is not setuid"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.wrap) > 0 {
				if _, err := exec.LookPath(tc.wrap[0]); err != nil {
					t.Skip(err)
				}
			}
			child := asOrdinaryUser(t, tc.wrap, "-test.run=^TestSandboxOrdinaryUserHostLacks$", "-test.v", "-test.count=1", "-test.timeout=4m")
			child.Env = append(child.Env, hostLacksEnv+"=1")
			if tc.setuid {
				child.Env[0] = "PATH=" + setuidBwrap(t) + string(os.PathListSeparator) + os.Getenv("PATH")
			}
			if tc.ns {
				// Root of a user namespace of its own, with the host's users
				// (nobody among them), where it may set that namespace's
				// limit.
				child.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER,
					UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: ordinaryUser + 1}},
					GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: ordinaryUser + 1}},
					GidMappingsEnableSetgroups: true}
			}
			var out bytes.Buffer
			child.Stdout, child.Stderr = &out, &out
			if err := child.Run(); err != nil {
				t.Fatalf("the child: %v\n%s", err, out.String())
			}
			full := out.String()
			results := map[string]hostLacksResult{}
			sc := bufio.NewScanner(&out)
			for sc.Scan() {
				if b, ok := strings.CutPrefix(sc.Text(), "sandbox-result "); ok {
					var r hostLacksResult
					if err := json.Unmarshal([]byte(b), &r); err != nil {
						t.Fatal(err)
					}
					results[r.Network] = r
				}
			}
			if len(results) != 2 {
				t.Fatalf("the child reported %d deploys, want 2:\n%s", len(results), out.String())
			}
			for network, want := range map[string]string{"": tc.want, NetworkNone: tc.none} {
				r := results[network]
				switch {
				case want == "" && (r.Result != "ok" || !r.Live):
					t.Errorf("network %q: %s, %q; want it live: nothing it needs is missing", network, r.Result, r.Error)
				case want != "" && (r.Result != "error" || !strings.Contains(r.Error, want)):
					t.Errorf("network %q: %s, error %q; want an error with %q\n%s", network, r.Result, r.Error, want, full)
				case want != "" && r.Live:
					t.Errorf("network %q: went live without its sandbox", network)
				}
			}
		})
	}
}

// setuidBwrap returns a folder that holds a setuid-root copy of bwrap, as
// some hosts install it, and skips t where the bit would do nothing.
func setuidBwrap(t *testing.T) string {
	t.Helper()
	dir := outsideTmp(t)
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil || st.Flags&unix.ST_NOSUID != 0 {
		t.Skipf("%s is mounted nosuid (%v): a setuid bwrap there would not be one", dir, err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bwrap, err := exec.LookPath("bwrap")
	if err != nil {
		t.Fatal(err)
	}
	copyFile(t, bwrap, filepath.Join(dir, "bwrap"))
	if err := os.Chmod(filepath.Join(dir, "bwrap"), 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	return dir
}
