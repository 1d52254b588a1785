package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// caddyCmd runs the built Caddy with args in dir and returns its standard
// output and error.
func caddyCmd(t *testing.T, dir string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, caddyBin, args...)
	cmd.Dir = dir
	cmd.Env = home(t)
	var out, errOut bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// checkCaddyfile runs "caddy fmt" and "caddy adapt" on the Caddyfile at path:
// fmt must leave it unchanged, adapt must succeed without warnings. It
// returns the adapted JSON.
func checkCaddyfile(t *testing.T, path string) map[string]any {
	return checkCaddyfileWith(t, path, false)
}

// checkCaddyfileWith is checkCaddyfile; with thirdParty, a Caddyfile may
// need a plugin that is not in this build: adapt may then fail, but only
// because that plugin's module is not registered (it returns nil).
func checkCaddyfileWith(t *testing.T, path string, thirdParty bool) map[string]any {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	formatted, stderr, err := caddyCmd(t, filepath.Dir(path), "fmt", filepath.Base(path))
	if err != nil && formatted == "" {
		t.Fatalf("caddy fmt %s: %v\n%s", path, err, stderr)
	}
	if formatted != string(src) {
		t.Errorf("caddy fmt changes %s; it prints:\n%s", path, formatted)
	}
	adapted, stderr, err := caddyCmd(t, filepath.Dir(path), "adapt", "--config", filepath.Base(path))
	if err != nil {
		if m := notRegistered.FindStringSubmatch(stderr); thirdParty && m != nil && !strings.Contains(m[1], "github_webhook") {
			t.Logf("needs the third-party module %s, not in this build", m[1])
			return nil
		}
		t.Fatalf("caddy adapt --config %s: %v\n%s", path, err, stderr)
	}
	if strings.Contains(stderr, `"level":"warn"`) || strings.Contains(stderr, `"level":"error"`) {
		t.Errorf("caddy adapt --config %s warns:\n%s", path, stderr)
	}
	var cfg map[string]any
	if err := json.Unmarshal([]byte(adapted), &cfg); err != nil {
		t.Fatalf("caddy adapt printed no JSON: %v\n%s", err, adapted)
	}
	return cfg
}

var notRegistered = regexp.MustCompile(`module not registered: ([a-z0-9_.]+)`)

// TestCaddyfileExample checks Caddyfile.example as the README tells users
// to: "caddy adapt --config Caddyfile.example" in the clone succeeds, and
// "caddy fmt" leaves the file as it is.
func TestCaddyfileExample(t *testing.T) {
	cfg := checkCaddyfile(t, filepath.Join(root, "Caddyfile.example"))
	b, _ := json.Marshal(cfg)
	for _, want := range []string{
		`"handler":"github_webhook"`,
		`"repo":"octocat/blog"`,
		`"secret":["{env.GITHUB_WEBHOOK_SECRET}"]`, // resolved at provision, not at adapt
		`"publish":"public"`,
		`"poll":600000000000`,
		`"path":["/_github"]`,
		`"handler":"file_server"`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the adapted Caddyfile.example lacks %s:\n%s", want, b)
		}
	}
	t.Run("with its commented-out settings", testExampleUncommented)
}

// testExampleUncommented uncomments the settings that Caddyfile.example
// shows commented out because they need more setup (the status page
// behind basic_auth, app, notify, previews with their site block and
// on-demand TLS), and checks the result as the file itself is checked.
func testExampleUncommented(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(root, "Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(src)
	for _, first := range []string{
		"# on_demand_tls {",
		"# basic_auth /_deploys {",
		"# github_webhook_status /_deploys",
		"# app 424242 ",
		"# notify {env.SLACK_WEBHOOK_URL} {",
		"# previews pr-{number}.preview.blog.example.com {",
		"# *.preview.blog.example.com {",
	} {
		text = uncomment(t, text, first)
	}
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(checkCaddyfile(t, path))
	for _, want := range []string{
		`"permission":{"module":"github_webhook"}`,
		`"handler":"authentication"`,
		`"handler":"github_webhook_status"`,
		`"app":{"app_id":424242,"key_file":"/etc/caddy/blog-deployer.private-key.pem"}`,
		`"notify":[{"format":"slack","url":"{env.SLACK_WEBHOOK_URL}"}]`,
		`"previews":{"forks_label":"preview","host":"pr-{number}.preview.blog.example.com"`,
		`"root":"/srv/blog/previews/{http.request.host}/current"`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the adapted Caddyfile.example, uncommented, lacks %s:\n%s", want, b)
		}
	}
}

// uncomment removes "# " from the line of text that starts, after its
// indent, with first, and, when it opens a block, from the lines after it
// down to the "# }" that closes it at the same indent.
func uncomment(t *testing.T, text, first string) string {
	t.Helper()
	lines := strings.Split(text, "\n")
	for i, line := range lines {
		indent := line[:len(line)-len(strings.TrimLeft(line, "\t"))]
		if !strings.HasPrefix(line, indent+first) {
			continue
		}
		for j := i; j < len(lines); j++ {
			if !strings.HasPrefix(lines[j], indent+"# ") {
				t.Fatalf("Caddyfile.example: line %d, in the block %q, is not commented out: %q", j+1, first, lines[j])
			}
			lines[j] = indent + strings.TrimPrefix(lines[j], indent+"# ")
			if !strings.HasSuffix(first, "{") || lines[j] == indent+"}" {
				return strings.Join(lines, "\n")
			}
		}
	}
	t.Fatalf("Caddyfile.example has no line %q", first)
	return text
}

// TestREADMECaddyfiles checks every Caddyfile of the documentation
// (README.md, CONTRIBUTING.md, docs/*.md, bench/README.md: the code blocks
// marked caddyfile) with caddy fmt and caddy adapt, and that every block
// marked json is valid JSON. A Caddyfile that needs a third-party plugin
// (one the page says to add with xcaddy --with) passes adapt when the only
// error is that plugin's missing module.
func TestREADMECaddyfiles(t *testing.T) {
	caddyfiles := map[string]int{}
	for _, f := range docFiles(t) {
		src, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		blocks, _ := codeBlocks(string(src))
		for _, b := range blocks {
			switch b.lang {
			case "json":
				if !json.Valid([]byte(b.body)) {
					t.Errorf("the json block at %s:%d is not valid JSON:\n%s", f, b.line, b.body)
				}
			case "caddyfile":
				caddyfiles[f]++
				path := filepath.Join(t.TempDir(), "Caddyfile")
				if err := os.WriteFile(path, []byte(b.body), 0o644); err != nil {
					t.Fatal(err)
				}
				t.Run(fmt.Sprintf("%s:%d", f, b.line), func(t *testing.T) { checkCaddyfileWith(t, path, true) })
			}
		}
	}
	if n := caddyfiles["README.md"]; n < 1 {
		t.Errorf("README.md has %d caddyfile blocks; it should show a minimal Caddyfile", n)
	}
	if n := caddyfiles[filepath.Join("docs", "examples.md")]; n < 4 {
		t.Errorf("docs/examples.md has %d caddyfile blocks; it should show Hugo, Jekyll, plain HTML and private repositories", n)
	}
}

// TestBuiltModules runs the README's check of a build:
// "caddy list-modules | grep github_webhook".
func TestBuiltModules(t *testing.T) {
	out, stderr, err := caddyCmd(t, root, "list-modules")
	if err != nil {
		t.Fatalf("caddy list-modules: %v\n%s", err, stderr)
	}
	for _, id := range []string{"http.handlers.github_webhook", "http.handlers.github_webhook_status", "admin.api.github_webhook", "tls.permission.github_webhook"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(id) + `$`).MatchString(out) {
			t.Errorf("caddy list-modules does not list %s", id)
		}
	}
}
