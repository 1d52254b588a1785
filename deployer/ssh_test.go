package deployer

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// sshServer runs a real OpenSSH sshd on 127.0.0.1 that lets clientKey log in
// as the current user. It returns the port and a known_hosts file for it.
// It skips the test where sshd cannot run (not installed, not root); CI
// installs openssh-server and runs as root.
func sshServer(t *testing.T, authorizedKey string) (port int, knownHosts string) {
	t.Helper()
	sshd, err := exec.LookPath("sshd")
	if err != nil {
		sshd = "/usr/sbin/sshd"
	}
	if _, err := os.Stat(sshd); err != nil {
		t.Skip("sshd is not installed (apt-get install openssh-server)")
	}
	if os.Geteuid() != 0 {
		t.Skip("sshd needs root for privilege separation")
	}
	os.MkdirAll("/run/sshd", 0o755)
	dir := t.TempDir()
	hostKey := filepath.Join(dir, "host_key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostKey).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	ports, err := testkit.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	port = ports[0] // another server taking it fails the known_hosts check
	config := filepath.Join(dir, "sshd_config")
	os.WriteFile(config, []byte(fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
AuthorizedKeysFile %s
PidFile %s
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
LogLevel ERROR
`, port, hostKey, authorizedKey, filepath.Join(dir, "sshd.pid"))), 0o600)
	cmd := exec.Command(sshd, "-D", "-e", "-f", config)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	testkit.WaitFor(t, 30*time.Second, "sshd to listen", func() error {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			return fmt.Errorf("%w; sshd: %s", err, stderr.String())
		}
		return c.Close()
	})
	pub, err := os.ReadFile(hostKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	knownHosts = filepath.Join(dir, "known_hosts")
	os.WriteFile(knownHosts, []byte(fmt.Sprintf("[127.0.0.1]:%d %s", port, pub)), 0o644)
	return port, knownHosts
}

// 11. An ssh remote with a deploy key and known hosts deploys; without a key
// the server accepts, or with a host that is not known, git fails at once
// instead of prompting.
func TestSSHRemote(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "deploy_key")
	other := filepath.Join(dir, "other_key")
	for _, k := range []string{key, other} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", k).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v %s", err, out)
		}
	}
	port, knownHosts := sshServer(t, key+".pub")
	emptyKnownHosts := filepath.Join(dir, "empty_known_hosts")
	os.WriteFile(emptyKnownHosts, nil, 0o644)

	r := newRemote(t)
	tip := r.commit(map[string]string{"index.html": "over ssh"})
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	remoteURL := fmt.Sprintf("ssh://%s@127.0.0.1:%d%s", u.Username, port, r.bare)

	t.Run("deploy key and known host", func(t *testing.T) {
		tg := start(t, Config{Remote: remoteURL, SSHKey: key, KnownHosts: knownHosts})
		tg.waitLive(tip)
		if got := readCurrent(t, tg.path, "index.html"); got != "over ssh" {
			t.Errorf("served %q", got)
		}
	})
	for _, tc := range []struct{ name, key, knownHosts, want string }{
		{"key the server refuses", other, knownHosts, "Permission denied"},
		{"host not known", key, emptyKnownHosts, "Host key verification failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The deploy's timeout is far beyond waitResult's deadline: a
			// git that prompted would fail the test by not ending in time.
			tg := start(t, Config{Remote: remoteURL, Branch: "main", SSHKey: tc.key, KnownHosts: tc.knownHosts, Timeout: time.Hour})
			s := tg.waitResult("error", "")
			if !strings.Contains(s.Last.Error, tc.want) {
				t.Errorf("error = %q, want %q", s.Last.Error, tc.want)
			}
		})
	}
}
