package caddywebhook

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddytest"
)

var update = flag.Bool("update", false, "rewrite the JSON of testdata/caddyfile_adapt/*.caddyfiletest")

func intPtr(n int) *int { return &n }

func TestUnmarshalCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input string
		want  Handler
		err   string // a part of the error; none when empty
	}{
		{
			name: "every subdirective",
			input: `github_webhook {
				repo        octocat/blog
				secret      {env.NEW_SECRET}
				secret      {file./run/old}
				path        /srv/blog
				branch      main
				remote      git@github.com:octocat/blog.git
				command     hugo --minify
				command     sh -c "echo 'built' > built.txt"
				command     ` + "`./post build`" + ` x
				publish     public
				env         HUGO_ENV production
				env         EMPTY ""
				timeout     2m30s
				keep        5
				depth       0
				submodules
				ssh_key     /etc/caddy/key
				known_hosts /etc/caddy/known_hosts
				token       {env.GITHUB_TOKEN}
				poll        1h
				max_body    10MiB
			}`,
			want: Handler{
				Repo:    "octocat/blog",
				Secret:  []string{"{env.NEW_SECRET}", "{file./run/old}"},
				Path:    "/srv/blog",
				Branch:  "main",
				Remote:  "git@github.com:octocat/blog.git",
				Command: [][]string{{"hugo", "--minify"}, {"sh", "-c", "echo 'built' > built.txt"}, {"./post build", "x"}},
				Publish: "public",
				Env:     map[string]string{"HUGO_ENV": "production", "EMPTY": ""},
				Timeout: caddy.Duration(150 * time.Second), Keep: 5, Depth: intPtr(0), Submodules: true,
				SSHKey: "/etc/caddy/key", KnownHosts: "/etc/caddy/known_hosts",
				Token: "{env.GITHUB_TOKEN}", Poll: caddy.Duration(time.Hour), MaxBody: 10 << 20,
			},
		},
		{
			name:  "minimal",
			input: "github_webhook {\n repo a/b\n secret s\n path /p\n}",
			want:  Handler{Repo: "a/b", Secret: []string{"s"}, Path: "/p"},
		},
		{
			name:  "depth and sizes",
			input: "github_webhook {\n depth 20\n max_body 1MB\n timeout 1d\n}",
			want:  Handler{Depth: intPtr(20), MaxBody: 1000000, Timeout: caddy.Duration(24 * time.Hour)},
		},
		{name: "empty block", input: "github_webhook {\n}", want: Handler{}},
		{name: "argument on the directive", input: "github_webhook extra {\n}", err: "wrong argument count"},
		{name: "unknown subdirective", input: "github_webhook {\n brnach main\n}", err: `unrecognized subdirective "brnach"`},
		{name: "repo without value", input: "github_webhook {\n repo\n}", err: "wrong argument count"},
		{name: "repo with two values", input: "github_webhook {\n repo a/b c/d\n}", err: "wrong argument count"},
		{name: "repo twice", input: "github_webhook {\n repo a/b\n repo c/d\n}", err: "repo may be given only once"},
		{name: "secret without value", input: "github_webhook {\n secret\n}", err: "wrong argument count"},
		{name: "secret with two values", input: "github_webhook {\n secret a b\n}", err: "wrong argument count"},
		{name: "path with two values", input: "github_webhook {\n path /a /b\n}", err: "wrong argument count"},
		{name: "branch without value", input: "github_webhook {\n branch\n}", err: "wrong argument count"},
		{name: "remote with two values", input: "github_webhook {\n remote a b\n}", err: "wrong argument count"},
		{name: "command without program", input: "github_webhook {\n command\n}", err: "wrong argument count"},
		{name: "publish with two values", input: "github_webhook {\n publish a b\n}", err: "wrong argument count"},
		{name: "env with one value", input: "github_webhook {\n env KEY\n}", err: "wrong argument count"},
		{name: "env with three values", input: "github_webhook {\n env KEY a b\n}", err: "wrong argument count"},
		{name: "env key twice", input: "github_webhook {\n env K a\n env K b\n}", err: "env K is set twice"},
		{name: "timeout not a duration", input: "github_webhook {\n timeout soon\n}", err: `timeout "soon" is not a duration: write 10m, 90s or 1h30m`},
		{name: "timeout in words", input: "github_webhook {\n timeout 10 minutes\n}", err: `timeout "10 minutes" is not a duration: write 10m, 90s or 1h30m`},
		// Ranges are checked by the deployer's Validate (TestProvisionErrors), not the parser.
		{name: "timeout negative", input: "github_webhook {\n timeout -1s\n}", want: Handler{Timeout: caddy.Duration(-time.Second)}},
		{name: "timeout without value", input: "github_webhook {\n timeout\n}", err: "timeout needs a duration: write 10m, 90s or 1h30m"},
		{name: "poll not a duration", input: "github_webhook {\n poll 5\n}", err: `poll "5" is not a duration: write 10m, 90s or 1h30m`},
		{name: "keep not a number", input: "github_webhook {\n keep three\n}", err: "not a whole number"},
		{name: "keep zero is the default, as in JSON", input: "github_webhook {\n keep 0\n}", want: Handler{}},
		{name: "depth negative", input: "github_webhook {\n depth -1\n}", want: Handler{Depth: intPtr(-1)}},
		{name: "depth with two values", input: "github_webhook {\n depth 1 2\n}", err: "wrong argument count"},
		{name: "submodules with a value", input: "github_webhook {\n submodules yes\n}", err: "wrong argument count"},
		{name: "sandbox", input: "github_webhook {\n sandbox\n}", want: Handler{Sandbox: true}},
		{name: "sandbox with a value", input: "github_webhook {\n sandbox on\n}", err: "wrong argument count"},
		{name: "sandbox twice", input: "github_webhook {\n sandbox\n sandbox\n}", err: "sandbox may be given only once"},
		{name: "sandbox without network", input: "github_webhook {\n sandbox {\n  network none\n }\n}", want: Handler{Sandbox: true, SandboxNetwork: "none"}},
		{name: "sandbox with outbound network", input: "github_webhook {\n sandbox {\n  network outbound\n }\n}", want: Handler{Sandbox: true, SandboxNetwork: "outbound"}},
		{name: "sandbox network unknown", input: "github_webhook {\n sandbox {\n  network host\n }\n}", err: `sandbox network "host": want none or outbound`},
		{name: "sandbox network without a value", input: "github_webhook {\n sandbox {\n  network\n }\n}", err: "wrong argument count"},
		{name: "sandbox unknown subdirective", input: "github_webhook {\n sandbox {\n  uid 1000\n }\n}", err: `unknown sandbox subdirective "uid"`},
		{name: "cache", input: "github_webhook {\n cache resources/_gen node_modules\n cache .jekyll-cache\n}",
			want: Handler{Cache: []string{"resources/_gen", "node_modules", ".jekyll-cache"}}},
		{name: "cache without folder", input: "github_webhook {\n cache\n}", err: "wrong argument count"},
		{name: "cache outside the release", input: "github_webhook {\n cache ok ../shared\n}",
			err: `cache folder "../shared" climbs out of the release, at Testfile:2`},
		{name: "cache absolute", input: "github_webhook {\n cache /var/cache/hugo\n}",
			err: `cache folder "/var/cache/hugo" must be relative to the release`},
		{name: "cache the release itself", input: "github_webhook {\n cache ./\n}", err: `cache folder "./" is the release itself`},
		{name: "cache in .git", input: "github_webhook {\n cache .git/objects\n}", err: `cache folder ".git/objects" is inside .git`},
		{name: "ssh_key without value", input: "github_webhook {\n ssh_key\n}", err: "wrong argument count"},
		{name: "known_hosts with two values", input: "github_webhook {\n known_hosts a b\n}", err: "wrong argument count"},
		{name: "token without value", input: "github_webhook {\n token\n}", err: "wrong argument count"},
		{name: "max_body not a size", input: "github_webhook {\n max_body lots\n}", err: "parsing max_body"},
		{name: "max_body zero", input: "github_webhook {\n max_body 0\n}", err: "between 1 byte and 1 TiB"},
		{name: "max_body without value", input: "github_webhook {\n max_body\n}", err: "wrong argument count"},
		{name: "deployments", input: "github_webhook {\n deployments production https://blog.example.com\n}",
			want: Handler{Deployments: &Deployments{Environment: "production", URL: "https://blog.example.com"}}},
		{name: "deployments without url", input: "github_webhook {\n deployments staging\n}",
			want: Handler{Deployments: &Deployments{Environment: "staging"}}},
		{name: "deployments without environment", input: "github_webhook {\n deployments\n}", err: "wrong argument count"},
		{name: "deployments with three values", input: "github_webhook {\n deployments a b c\n}", err: "wrong argument count"},
		{name: "deployments twice", input: "github_webhook {\n deployments a\n deployments b\n}", err: "deployments may be given only once"},
		{name: "require_checks of all", input: "github_webhook {\n require_checks\n}",
			want: Handler{RequireChecks: &RequireChecks{}}},
		{name: "require_checks named", input: "github_webhook {\n require_checks CI \"Link check\"\n}",
			want: Handler{RequireChecks: &RequireChecks{Names: []string{"CI", "Link check"}}}},
		{name: "require_checks pinned to an app and a workflow file", input: "github_webhook {\n require_checks CI@app/github-actions \"Link check@.github/workflows/links.yml\" license/cla\n}",
			want: Handler{RequireChecks: &RequireChecks{Names: []string{"CI@app/github-actions", "Link check@.github/workflows/links.yml", "license/cla"}}}},
		{name: "require_checks twice", input: "github_webhook {\n require_checks\n require_checks CI\n}", err: "require_checks may be given only once"},
		{name: "api_url", input: "github_webhook {\n api_url https://ghe.example.com/api/v3\n}",
			want: Handler{APIURL: "https://ghe.example.com/api/v3"}},
		{name: "cluster", input: "github_webhook {\n cluster blog.example-1_a\n cluster_poll 50ms\n}",
			want: Handler{Cluster: "blog.example-1_a", ClusterPoll: caddy.Duration(50 * time.Millisecond)}},
		{name: "cluster without name", input: "github_webhook {\n cluster\n}", err: "wrong argument count"},
		{name: "cluster with two names", input: "github_webhook {\n cluster a b\n}", err: "wrong argument count"},
		{name: "cluster twice", input: "github_webhook {\n cluster a\n cluster b\n}", err: "cluster may be given only once"},
		{name: "cluster name with a slash", input: "github_webhook {\n cluster a/b\n}", err: `cluster name "a/b" must be 1 to 64 letters`},
		{name: "cluster name of dots", input: "github_webhook {\n cluster ..\n}", err: "cluster name"},
		{name: "cluster_poll not a duration", input: "github_webhook {\n cluster_poll often\n}", err: "parsing cluster_poll"},
		{name: "cluster_poll without value", input: "github_webhook {\n cluster_poll\n}", err: "wrong argument count"},
		{name: "api_url without value", input: "github_webhook {\n api_url\n}", err: "wrong argument count"},
		{name: "forge", input: "github_webhook {\n forge gitlab\n}", want: Handler{Forge: "gitlab"}},
		{name: "forge with a base URL", input: "github_webhook {\n forge gitea http://127.0.0.1:3000\n}",
			want: Handler{Forge: "gitea", ForgeURL: "http://127.0.0.1:3000"}},
		{name: "forge without kind", input: "github_webhook {\n forge\n}", err: "wrong argument count"},
		{name: "forge with three arguments", input: "github_webhook {\n forge gitea https://a https://b\n}", err: "wrong argument count"},
		{name: "forge twice", input: "github_webhook {\n forge gitea\n forge gitlab\n}", err: "forge may be given only once"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got Handler
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestCaddyfileAdapt adapts every testdata/caddyfile_adapt/*.caddyfiletest:
// a Caddyfile, a line of dashes, and either the JSON it must adapt to or a
// part of the error it must fail with. go test -update rewrites the JSON.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "caddyfile_adapt", "*.caddyfiletest"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			input, expected, ok := strings.Cut(string(data), "----------")
			if !ok {
				t.Fatal("no line of dashes")
			}
			input = strings.TrimSpace(input) + "\n"
			expected = strings.TrimSpace(expected)

			if *update && (expected == "" || expected[0] == '{') {
				out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
				if err != nil {
					t.Fatal(err)
				}
				var pretty bytes.Buffer
				json.Indent(&pretty, out, "", "\t")
				expected = pretty.String()
				os.WriteFile(file, []byte(input+"----------\n"+expected+"\n"), 0o644)
			}

			if strings.HasPrefix(expected, "{") {
				if !caddytest.CompareAdapt(t, file, input, "caddyfile", expected) {
					t.Error("adapted JSON differs (diff above)")
				}
				return
			}
			_, _, err = caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
			if err == nil || expected == "" || !strings.Contains(err.Error(), expected) {
				t.Errorf("error %v, want one with %q", err, expected)
			}
		})
	}
}

// TestAdaptKeepsSecretsOut: secrets and tokens written as placeholders stay
// placeholders in the adapted JSON, whatever the environment holds when the
// Caddyfile is adapted.
func TestAdaptKeepsSecretsOut(t *testing.T) {
	const secret, token = "adapt-time-secret-4f1c", "ghp_adapttimetoken9b2e"
	t.Setenv("CWH_ADAPT_SECRET", secret)
	t.Setenv("CWH_ADAPT_TOKEN", token)
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(`:8080 {
		github_webhook /_github {
			repo   octocat/blog
			secret {env.CWH_ADAPT_SECRET}
			token  {env.CWH_ADAPT_TOKEN}
			path   /srv/blog
		}
	}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{secret, token} {
		if bytes.Contains(out, []byte(s)) {
			t.Errorf("adapted JSON holds %q: %s", s, out)
		}
	}
	for _, s := range []string{`"secret":["{env.CWH_ADAPT_SECRET}"]`, `"token":"{env.CWH_ADAPT_TOKEN}"`} {
		if !bytes.Contains(out, []byte(s)) {
			t.Errorf("adapted JSON lacks %s: %s", s, out)
		}
	}
}
