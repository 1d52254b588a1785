package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadChecks runs the built Caddy's own commands on the mistakes a new
// user makes, as the user would: `caddy validate` refuses the ones a
// Caddyfile shows with the file, the line and what to write instead, and
// warns about the ones that load but will not work as meant; `caddy adapt`
// warns about a secret that {$NAME} wrote into the JSON. On main, every one
// of these validated silently but for the duration ("wrong argument count").
func TestLoadChecks(t *testing.T) {
	const envSecret = "e2e-substituted-secret-41d7"
	t.Setenv("CWH_E2E_SECRET", envSecret)
	site := func(block string) string {
		return ":8080 {\n\troot * /srv/blog/current\n\tfile_server\n\n" + block + "}\n"
	}
	for _, tc := range []struct {
		name      string
		caddyfile string
		cmd       string // validate or adapt
		fails     bool
		want      []string // parts of the output
	}{
		{
			name:      "no matcher",
			caddyfile: site("\tgithub_webhook {\n\t\trepo octocat/blog\n\t\tsecret {env.GITHUB_WEBHOOK_SECRET}\n\t\tpath /srv/blog\n\t}\n"),
			cmd:       "validate", fails: true,
			want: []string{"github_webhook needs a matcher", "write github_webhook /_github { ... }", "at Caddyfile:5"},
		},
		{
			name:      "no repo",
			caddyfile: site("\tgithub_webhook /_github {\n\t\tsecret {env.GITHUB_WEBHOOK_SECRET}\n\t\tpath /srv/blog\n\t}\n"),
			cmd:       "validate", fails: true,
			want: []string{"repo is required: add repo <owner/name> to the github_webhook block, at Caddyfile:5"},
		},
		{
			name:      "duration in words",
			caddyfile: site("\tgithub_webhook /_github {\n\t\trepo octocat/blog\n\t\tsecret {env.GITHUB_WEBHOOK_SECRET}\n\t\tpath /srv/blog\n\t\ttimeout 10 minutes\n\t}\n"),
			cmd:       "validate", fails: true,
			want: []string{`timeout \"10 minutes\" is not a duration: write 10m, 90s or 1h30m`, "at Caddyfile:9"},
		},
		{
			name: "root at the folder",
			caddyfile: strings.Replace(site("\tgithub_webhook /_github {\n\t\trepo octocat/blog\n\t\tsecret {env.GITHUB_WEBHOOK_SECRET}\n\t\tpath /srv/blog\n\t}\n"),
				"/srv/blog/current", "/srv/blog", 1),
			cmd: "validate", fails: true,
			want: []string{"root /srv/blog serves the deployer's folder (state.json, cache.git, build logs) instead of the site: write root * /srv/blog/current"},
		},
		{
			name:      "secret from {$NAME}",
			caddyfile: site("\tgithub_webhook /_github {\n\t\trepo octocat/blog\n\t\tsecret {$CWH_E2E_SECRET}\n\t\tpath /srv/blog\n\t}\n"),
			cmd:       "adapt",
			want: []string{`"level":"warn"`, "written into the adapted JSON by {$CWH_E2E_SECRET}", "write {env.CWH_E2E_SECRET}",
				`"file":"Caddyfile","line":7`},
		},
		{
			name: "literal secret and a program not installed",
			caddyfile: site("\tgithub_webhook /_github {\n\t\trepo octocat/blog\n\t\tsecret literal-e2e-secret-value\n\t\tpath " +
				filepath.Join(t.TempDir(), "site") + "\n\t\tcommand no-such-builder-xyz build\n\t}\n"),
			cmd: "validate",
			want: []string{"prefer {env.*} or {file.*}", "a build program is not on the PATH of the commands",
				`"program":"no-such-builder-xyz"`, `"path_env":"` + os.Getenv("PATH") + `"`, "Valid configuration"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(tc.caddyfile), 0o644); err != nil {
				t.Fatal(err)
			}
			stdout, stderr, err := caddyCmd(t, dir, tc.cmd, "--config", "Caddyfile")
			if (err != nil) != tc.fails {
				t.Errorf("caddy %s: %v, want it to fail: %v\n%s", tc.cmd, err, tc.fails, stderr)
			}
			for _, want := range tc.want {
				if !strings.Contains(stderr, want) && !strings.Contains(stdout, want) {
					t.Errorf("caddy %s's output lacks %q:\n%s\n%s", tc.cmd, want, stdout, stderr)
				}
			}
			for _, secret := range []string{envSecret, "literal-e2e-secret-value"} {
				if strings.Contains(stderr, secret) {
					t.Errorf("caddy %s's standard error holds the secret %q", tc.cmd, secret)
				}
			}
			if tc.cmd == "adapt" && !strings.Contains(stdout, envSecret) {
				t.Errorf("the adapted JSON does not hold the substituted secret, so the warning would be wrong:\n%s", stdout)
			}
		})
	}
}
