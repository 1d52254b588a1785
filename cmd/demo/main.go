// Command demo shows the github_webhook handler at work on one machine, with
// no GitHub account and no network. From a clone of the repository:
//
//	go run ./cmd/demo
//
// It compiles Caddy with this module (./cmd/caddy; the first run takes
// minutes, and says so, later runs reuse the binary), creates a temporary
// folder holding a local bare git repository with a small Hugo blog (a plain
// HTML site when hugo is not installed), runs Caddy on 127.0.0.1 with a
// github_webhook handler that deploys that repository, waits for the first
// deploy, and prints the site's URL and the command that publishes a new
// post:
//
//	go run ./cmd/demo push -dir <folder> "My second post"
//
// push commits the post to the demo repository and sends the running Caddy a
// push delivery signed with the demo's secret, as GitHub would; the page shows
// the post a moment later, at its own URL (/posts/<title>/). Ctrl-C stops
// Caddy and removes the folder. Caddy's JSON log is in the folder, not on
// the screen: the demo prints what happens in words.
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
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// The demo imports no Caddy: "go run ./cmd/demo" compiles it in seconds,
// and the demo then says that it compiles Caddy, and how far it got, while
// testkit builds ./cmd/caddy, which it runs as a process of its own.

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

// intro is the demo's first line of output.
const intro = "caddy-github-webhook demo: Caddy deploys a git repository on every signed push; here a local one, with no GitHub account and no network."

func demoMain(args []string) error {
	fs := flag.NewFlagSet("demo", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage:\n  go run ./cmd/demo [-port N] [-html] [-keep] [-caddy <binary>]\n  go run ./cmd/demo push -dir <folder> <post title>\n\nFlags:\n")
		fs.PrintDefaults()
	}
	port := fs.Int("port", 0, "the site's port on 127.0.0.1 (0: a free one)")
	forceHTML := fs.Bool("html", false, "deploy the plain HTML site even when hugo is installed")
	keep := fs.Bool("keep", false, "keep the temporary folder when the demo ends")
	caddyBin := fs.String("caddy", "", "a Caddy binary with this module to run (default: compile ./cmd/caddy of this clone, once)")
	fs.Parse(args)
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	fmt.Println(intro)

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
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *caddyBin == "" {
		if *caddyBin, err = buildCaddy(ctx, os.Stdout); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}

	dir, err := os.MkdirTemp("", "caddy-github-webhook-demo-")
	if err != nil {
		return err
	}
	err = runDemo(ctx, root, dir, kind, *port, *caddyBin)
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
func runDemo(ctx context.Context, root, dir, kind string, port int, caddyBin string) error {
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
		ports, err := testkit.FreePorts(1)
		if err != nil {
			return err
		}
		port = ports[0]
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

	// Caddy reads the secret from its environment, as it would in
	// production. Its own files stay out of the user's folders: its XDG
	// folders are in the demo's, and the Caddyfile turns the autosave off
	// (persist_config) and puts storage there too. Its log goes to
	// caddy.log; the demo prints what happens in words.
	caddyHome := filepath.Join(dir, "caddy-home")
	env := append(os.Environ(),
		"GITHUB_WEBHOOK_SECRET="+secret,
		"XDG_CONFIG_HOME="+filepath.Join(caddyHome, "config"),
		"XDG_DATA_HOME="+filepath.Join(caddyHome, "data"),
	)
	follow := newLogFollower(logFile)
	caddy, err := testkit.StartCaddy(ctx, testkit.CaddyOptions{
		Binary:   caddyBin,
		Dir:      dir,
		Config:   func(admin string) string { return demoCaddyfile(dir, kind, port, admin) },
		Env:      env,
		OwnGroup: true, // Ctrl-C reaches the demo, which stops Caddy
		Output:   logFile,
		Expect:   site,
		Ready:    []string{fmt.Sprintf("127.0.0.1:%d", port)},
		Wait:     time.Minute,
	})
	if err != nil {
		return fmt.Errorf("starting Caddy: %w", err)
	}
	defer func() {
		fmt.Println("stopping Caddy")
		if err := caddy.Stop(syscall.SIGTERM, 30*time.Second); err != nil {
			fmt.Fprintln(os.Stderr, "stopping Caddy:", err)
		}
	}()

	what := "the Hugo blog (hugo --minify)"
	if kind == "html" {
		what = "the plain HTML site"
	}
	fmt.Printf("Caddy is running (process %d); deploying %s from %s ...\n", caddy.PID(), what, bare)

	// The first deploy starts by itself: Caddy's start wakes the deployer.
	waitCtx, cancel := context.WithTimeout(ctx, deployWait)
	defer cancel()
	ev, err := follow.next(waitCtx, caddy.Done(), func(e logEntry) bool {
		return e.Msg == "deploy succeeded" || e.Msg == "deploy failed"
	}, printEntry)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errExited) {
			return fmt.Errorf("caddy exited (%v) before the first deploy; its log is %s", caddy.Err(), logFile)
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
  status page:   %s_deploys
  deploys:       curl -s http://%s/github_webhook/deploys
`, time.Since(start).Seconds(), st.URL, rel, dir, caddy.Config, logFile,
		filepath.Join(site, "releases"), st.WebhookURL, st.URL, caddy.Admin)
	fmt.Println("\nPress Ctrl-C to stop the demo; it removes", dir)

	// Show deliveries and deploys as they happen, until Ctrl-C.
	if _, err := follow.next(ctx, caddy.Done(), func(logEntry) bool { return false }, printEntry); errors.Is(err, errExited) {
		return fmt.Errorf("caddy exited (%v); its log is %s", caddy.Err(), logFile)
	}
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

// demoCaddyfile returns the demo's Caddyfile, with its admin endpoint at
// admin.
func demoCaddyfile(dir, kind string, port int, admin string) string {
	build := ""
	if kind == "hugo" {
		build = `
		command hugo --minify
		publish public
		env HUGO_CACHEDIR ` + quote(filepath.Join(dir, "hugo-cache"))
	}
	return fmt.Sprintf(`# The demo's Caddyfile, written by go run ./cmd/demo.
{
	admin %s
	persist_config off
	storage file_system %s
}

http://127.0.0.1:%d {
	root * %s
	file_server

	# The status page; on a server, put basic_auth in front of it.
	github_webhook_status /_deploys

	github_webhook /_github {
		repo %s
		secret {env.GITHUB_WEBHOOK_SECRET}
		path %s
		branch %s
		remote %s%s
		timeout 2m
	}
}
`, admin, quote(filepath.Join(dir, "caddy-home", "storage")),
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
