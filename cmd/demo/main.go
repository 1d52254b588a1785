// Command demo shows the github_webhook handler at work on one machine, with
// no GitHub account and no network. From a clone of the repository:
//
//	go run ./cmd/demo
//
// It creates a temporary folder holding a local bare git repository with a
// small Hugo blog (a plain HTML site when hugo is not installed), starts Caddy
// in this process on 127.0.0.1 with a github_webhook handler that deploys
// that repository, waits for the first deploy, and prints the site's URL and
// the command that publishes a new post:
//
//	go run ./cmd/demo push -dir <folder> "My second post"
//
// push commits the post to the demo repository and sends the running Caddy a
// push delivery signed with the demo's secret, as GitHub would; the page shows
// the post a moment later. Ctrl-C stops Caddy and removes the folder.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"

	// The Caddyfile adapter, Caddy's standard modules, and this module.
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-webhooks/caddy-github-webhook/caddywebhook"
)

// deployWait bounds how long the demo waits for a deploy to go live.
const deployWait = 3 * time.Minute

// stateFile, in the demo's folder, tells push where the running demo is.
const stateFile = "demo.json"

// demoState is what push needs to know about a running demo.
type demoState struct {
	URL        string `json:"url"`         // the site, with a trailing slash
	WebhookURL string `json:"webhook_url"` // where deliveries go
	Secret     string `json:"secret"`      // the webhook secret
	Repo       string `json:"repo"`        // owner/name, as in the Caddyfile
	Branch     string `json:"branch"`
	Kind       string `json:"kind"` // "hugo" or "html"
	Work       string `json:"work"` // the author's working copy
	Log        string `json:"log"`  // Caddy's log file
}

const (
	demoRepo   = "demo/blog"
	demoBranch = "main"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "push" {
		if err := pushMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "demo push:", err)
			os.Exit(1)
		}
		return
	}
	if err := demoMain(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func demoMain(args []string) error {
	fs := flag.NewFlagSet("demo", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage:\n  go run ./cmd/demo [-port N] [-html]\n  go run ./cmd/demo push -dir <folder> <post title>\n\nFlags:\n")
		fs.PrintDefaults()
	}
	port := fs.Int("port", 0, "the site's port on 127.0.0.1 (0: a free one)")
	forceHTML := fs.Bool("html", false, "deploy the plain HTML site even when hugo is installed")
	keep := fs.Bool("keep", false, "keep the temporary folder when the demo ends")
	fs.Parse(args)
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}

	if _, err := exec.LookPath("git"); err != nil {
		return errors.New("git is not installed (on PATH); the demo needs it (Debian/Ubuntu: sudo apt-get install git)")
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}

	kind := "hugo"
	switch {
	case *forceHTML:
		kind = "html"
	case !hugoWorks():
		kind = "html"
		fmt.Println("hugo is not installed (not on PATH), so the demo deploys a plain HTML site")
		fmt.Println("instead of the Hugo blog. To see the blog built by hugo, install it and run")
		fmt.Println("the demo again:  sudo apt-get install hugo   (macOS: brew install hugo)")
		fmt.Println()
	}

	dir, err := os.MkdirTemp("", "caddy-github-webhook-demo-")
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = runDemo(ctx, root, dir, kind, *port)
	switch {
	case *keep:
		fmt.Println("kept", dir)
	case err != nil:
		fmt.Println("kept", dir, "to look into; remove it when done")
	default:
		if rerr := os.RemoveAll(dir); rerr != nil {
			return fmt.Errorf("removing %s: %w", dir, rerr)
		}
		fmt.Println("removed", dir)
	}
	return err
}

// runDemo sets up the demo in dir, runs it until ctx ends, and stops Caddy.
func runDemo(ctx context.Context, root, dir, kind string, port int) error {
	start := time.Now()
	site := filepath.Join(dir, "site")
	logFile := filepath.Join(dir, "caddy.log")

	// The demo's "GitHub": a bare repository dir/remote.git, and a working
	// clone dir/work that commits the example site and pushes it there.
	repo, err := testkit.NewRepo(dir, demoBranch)
	if err == nil {
		err = repo.CopyFrom(filepath.Join(root, "testdata", "sites", siteFolder(kind)))
	}
	if err == nil {
		_, err = repo.Commit("Initial commit", nil)
	}
	if err != nil {
		return fmt.Errorf("creating the demo repository: %w", err)
	}
	bare, work := repo.Bare, repo.Work

	if port == 0 {
		if port, err = freePort(); err != nil {
			return err
		}
	}
	adminPort, err := freePort()
	if err != nil {
		return err
	}
	secret, err := randomSecret()
	if err != nil {
		return err
	}
	st := demoState{
		URL:        fmt.Sprintf("http://127.0.0.1:%d/", port),
		WebhookURL: fmt.Sprintf("http://127.0.0.1:%d/_github", port),
		Secret:     secret,
		Repo:       demoRepo,
		Branch:     demoBranch,
		Kind:       kind,
		Work:       work,
		Log:        logFile,
	}
	stBytes, _ := json.MarshalIndent(st, "", "\t")
	if err := os.WriteFile(filepath.Join(dir, stateFile), stBytes, 0o600); err != nil {
		return err
	}

	// Caddy reads the secret from its environment, as it would in production.
	// Its own files stay out of the user's folders: the Caddyfile turns the
	// autosave off (persist_config) and puts storage in the demo's folder.
	// The environment cannot do that for the autosave, nor for the default
	// storage: Caddy computes their paths from XDG_CONFIG_HOME and
	// XDG_DATA_HOME when its package initialises, before main runs. It does
	// read XDG_DATA_HOME again for the few files it writes later (the
	// instance id that storage cleaning stamps), so that one moves them here.
	os.Setenv("GITHUB_WEBHOOK_SECRET", secret)
	os.Setenv("XDG_DATA_HOME", filepath.Join(dir, "caddy-home", "data"))

	caddyfile := demoCaddyfile(dir, kind, port, adminPort)
	caddyfilePath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(caddyfilePath, []byte(caddyfile), 0o644); err != nil {
		return err
	}
	adapter := caddyconfig.GetAdapter("caddyfile")
	cfgJSON, warnings, err := adapter.Adapt([]byte(caddyfile), map[string]any{"filename": caddyfilePath})
	if err != nil {
		return fmt.Errorf("adapting the demo's Caddyfile: %w", err)
	}
	for _, w := range warnings {
		fmt.Fprintln(os.Stderr, "caddyfile warning:", w.String())
	}

	follow := newLogFollower(logFile)
	if err := caddy.Load(cfgJSON, true); err != nil {
		return fmt.Errorf("starting Caddy: %w", err)
	}
	defer func() {
		fmt.Println("stopping Caddy")
		if err := caddy.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping Caddy:", err)
		}
	}()

	what := "the Hugo blog (hugo --minify)"
	if kind == "html" {
		what = "the plain HTML site"
	}
	fmt.Printf("Caddy is running; deploying %s from %s ...\n", what, bare)

	// The first deploy starts by itself: Caddy's start wakes the deployer.
	waitCtx, cancel := context.WithTimeout(ctx, deployWait)
	defer cancel()
	ev, err := follow.next(waitCtx, func(e logEntry) bool {
		return e.Msg == "deploy succeeded" || e.Msg == "deploy failed"
	}, printEntry)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("no deploy within %s; Caddy's log is %s", deployWait, logFile)
	}
	if ev.Msg == "deploy failed" {
		return fmt.Errorf("the first deploy failed (see above); Caddy's log is %s", logFile)
	}
	if err := checkPage(st.URL, ""); err != nil {
		return err
	}

	rel, err := demoCommand(root)
	if err != nil {
		return err
	}
	fmt.Printf(`
The demo site is live (deployed in %.1fs): %s

To publish a new post, run in another terminal (from the same folder):

    %s push -dir %s "My second post"

It commits the post to the demo repository and sends Caddy a push delivery
signed with the webhook secret, as GitHub would. Reload the page to see it.

  Caddyfile:     %s
  Caddy's log:   %s
  releases:      %s
  webhook:       %s
`, time.Since(start).Seconds(), st.URL, rel, dir, caddyfilePath, logFile,
		filepath.Join(site, "releases"), st.WebhookURL)
	if _, err := caddy.GetModule("admin.api.github_webhook"); err == nil {
		fmt.Printf("  deploys:       curl -s http://127.0.0.1:%d/github_webhook/deploys\n", adminPort)
	}
	fmt.Println("\nPress Ctrl-C to stop the demo; it removes", dir)

	// Show deliveries and deploys as they happen, until Ctrl-C.
	follow.next(ctx, func(logEntry) bool { return false }, printEntry)
	fmt.Println()
	return nil
}

// siteFolder returns the folder under testdata/sites of a site kind.
func siteFolder(kind string) string {
	if kind == "hugo" {
		return "hugo-blog"
	}
	return "html"
}

// demoCaddyfile returns the demo's Caddyfile.
func demoCaddyfile(dir, kind string, port, adminPort int) string {
	build := ""
	if kind == "hugo" {
		build = `
		command hugo --minify
		publish public
		env HUGO_CACHEDIR ` + quote(filepath.Join(dir, "hugo-cache"))
	}
	return fmt.Sprintf(`# The demo's Caddyfile, written by go run ./cmd/demo.
{
	admin 127.0.0.1:%d
	persist_config off
	storage file_system %s
	log {
		output file %s
	}
}

http://127.0.0.1:%d {
	root * %s
	file_server

	github_webhook /_github {
		repo %s
		secret {env.GITHUB_WEBHOOK_SECRET}
		path %s
		branch %s
		remote %s%s
		timeout 2m
	}
}
`, adminPort, quote(filepath.Join(dir, "caddy-home", "storage")), quote(filepath.Join(dir, "caddy.log")),
		port, quote(filepath.Join(dir, "site", "current")), demoRepo, quote(filepath.Join(dir, "site")),
		demoBranch, quote(filepath.Join(dir, "remote.git")), build)
}

// quote quotes a Caddyfile token when it needs it.
func quote(s string) string {
	if strings.ContainsAny(s, " \t\"'`{}#") {
		return strconv.Quote(s)
	}
	return s
}

// hugoWorks reports whether hugo is on PATH and runs.
func hugoWorks() bool {
	if _, err := exec.LookPath("hugo"); err != nil {
		return false
	}
	return exec.Command("hugo", "version").Run() == nil
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomSecret() (string, error) {
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// checkPage fetches url and reports an error unless it answers 200 and, when
// want is not empty, its body contains want.
func checkPage(url, want string) error {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if want != "" && !strings.Contains(string(body), want) {
		return fmt.Errorf("GET %s: the page does not show %q yet", url, want)
	}
	return nil
}

// moduleRoot returns the root of this module's clone: the folder holding
// its go.mod, found from the working directory upwards.
func moduleRoot() (string, error) {
	const module = "module github.com/caddy-webhooks/caddy-github-webhook"
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			strings.HasPrefix(strings.TrimSpace(string(b)), module) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run the demo from a clone of the repository: cd caddy-github-webhook && go run ./cmd/demo")
		}
		dir = parent
	}
}

// demoCommand returns how to run the demo again from the working directory:
// "go run ./cmd/demo" from the module root.
func demoCommand(root string) (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	rel, err := filepath.Rel(wd, filepath.Join(root, "cmd", "demo"))
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(rel, "..") {
		rel = "./" + rel
	}
	return "go run " + rel, nil
}
