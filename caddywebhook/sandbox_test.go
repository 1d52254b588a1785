package caddywebhook

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
)

// TestSandboxConfig: the handler hands the deployer its sandbox setting and
// what a sandboxed build must not see: the files read by the {file.*}
// placeholders of secret and token, and Caddy's data and configuration
// folders. Literal values and {env.*} names are not paths.
func TestSandboxConfig(t *testing.T) {
	h := &Handler{
		Secret:  []string{"{file./etc/caddy/webhook-secret}", "{env.CWH_X}", "literal-secret"},
		Token:   "{file.token.txt}",
		SSHKey:  "/etc/caddy/deploy_key",
		Sandbox: true,
	}
	cfg := h.deployerConfig("resolved-token")
	if !cfg.Sandbox {
		t.Error("sandbox did not reach the deployer")
	}
	tokenFile, _ := filepath.Abs("token.txt")
	want := []string{"/etc/caddy/webhook-secret", tokenFile, caddy.AppDataDir(), caddy.AppConfigDir()}
	for _, p := range want {
		if !slices.Contains(cfg.Hide, p) {
			t.Errorf("hidden %q, want it to include %s", cfg.Hide, p)
		}
	}
	for _, p := range cfg.Hide {
		if !filepath.IsAbs(p) || strings.Contains(p, "literal-secret") || strings.Contains(p, "CWH_X") {
			t.Errorf("hidden %q holds %q", cfg.Hide, p)
		}
	}
	if cfg.SSHKey != "/etc/caddy/deploy_key" {
		t.Errorf("ssh key %q: the deployer hides it", cfg.SSHKey)
	}
	if (&Handler{}).deployerConfig("").Sandbox {
		t.Error("sandbox is on by default")
	}
	// The sandbox's network: outbound is the deployer's default, none
	// reaches it as none.
	for network, want := range map[string]string{"": "", "outbound": "", "none": deployer.NetworkNone} {
		if got := (&Handler{Sandbox: true, SandboxNetwork: network}).deployerConfig("").SandboxNetwork; got != want {
			t.Errorf("sandbox_network %q reached the deployer as %q, want %q", network, got, want)
		}
	}
}

// TestSandboxThroughCaddy loads a Caddyfile with sandbox and a second
// secret read from a file: the build, which tries to read that file and
// dumps its environment, goes live, and what it wrote holds neither the
// secret nor any of Caddy's variables.
func TestSandboxThroughCaddy(t *testing.T) {
	if _, err := exec.LookPath("bwrap"); err != nil {
		t.Skip("bwrap is not installed; CI installs it: apt-get install bubblewrap")
	}
	s := newTestSite(t)
	// Not under /tmp: the sandbox's private /tmp would hide it anyway.
	dir, err := os.MkdirTemp("/var/tmp", "caddywebhook-sandbox-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	const fileSecret = "secret-from-a-file-91ac3e"
	secretFile := filepath.Join(dir, "webhook-secret")
	if err := os.WriteFile(secretFile, []byte(fileSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	c1 := s.repo.Commit("test commit", map[string]string{"index.html": "one"})
	s.start(s.caddyfile("secret {file." + secretFile + "}\n" +
		"sandbox\n" +
		"command sh -c `cat \"$0\" > leak.txt 2>&1; env > env.txt` " + secretFile))
	s.waitLive(c1)
	leak := get(t, siteURL+"/leak.txt")
	if strings.Contains(leak, fileSecret) {
		t.Errorf("the sandboxed build read the secret file: %q", leak)
	}
	env := get(t, siteURL+"/env.txt")
	for _, v := range []string{testSecret, testOldSecret, testToken, "CWH_TEST_"} {
		if strings.Contains(env, v) {
			t.Errorf("the sandboxed build's environment holds %q:\n%s", v, env)
		}
	}
	// Caddy's own XDG folders stay out; the build's cache home is the site's.
	for line := range strings.Lines(env) {
		if strings.HasPrefix(line, "XDG_") && line != "XDG_CACHE_HOME="+filepath.Join(s.path, "cache", "xdg")+"\n" {
			t.Errorf("the sandboxed build's environment holds %q", strings.TrimSpace(line))
		}
	}
	if !strings.Contains(env, "HOME="+filepath.Join(s.path, "home")+"\n") {
		t.Errorf("HOME is not the site's home folder:\n%s", env)
	}
}
