package caddywebhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "github-webhook",
		Usage: "status|deploy|rollback|logs|previews [--address <interface>] [--config <path> [--adapter <name>]] [--json]",
		Short: "Shows and steers the deploys of a running Caddy's github_webhook targets",
		Long: `
Shows and steers the deploys of the github_webhook targets of a running Caddy,
through its admin API. A target is named by its path, as configured.

  status [<path>...]            what is live, the deploy running, the last result
  deploy <path> [--wait]        deploy now, as a delivery would
  rollback <path> [<release>]   switch current to a kept release
  logs [-f] <path> [<release>]  a build log; -f follows the running build
  previews <path>               the previews of pull requests of a target
  previews rm <path> <number>   remove a preview

The admin endpoint is found as "caddy reload" finds it: --address, else the
admin option of the configuration given by --config (and --adapter), else
localhost:2019. Output is a table for people; --json prints the admin API's
objects for scripts.

Exit status: 0 when all is well; 1 when a target's last deploy failed (status,
deploy --wait), so that "status" works as a health check; 2 when a named
target, release or preview does not exist, or the admin API cannot be reached
or refused the request.
`,
		CobraFunc: func(cmd *cobra.Command) {
			f := cmd.PersistentFlags()
			f.String("address", "", "The admin API's address, if not the configuration's or the default")
			f.StringP("config", "c", "", "Configuration file to read the admin address from, if --address is not used")
			f.StringP("adapter", "a", "", "Name of the adapter of --config")
			f.Bool("json", false, "Print the admin API's JSON instead of a table")
			cmd.AddCommand(statusCommand(), deployCommand(), rollbackCommand(), logsCommand(), previewsCommand())
		},
	})
}

// Exit statuses of the command.
const (
	exitFailed  = 1 // a target's last deploy failed
	exitTrouble = 2 // no such target, release or preview; the admin API unreachable or refusing
)

// cli is one run of a subcommand: where the admin API is, and the output.
type cli struct {
	cmd     *cobra.Command
	addr    string
	json    bool
	out     io.Writer
	errOut  io.Writer
	command string // "status", "deploy", ...: for messages
}

// run wraps a subcommand's function: it finds the admin endpoint, runs f,
// prints f's error and turns its exit status into Caddy's.
func cliRun(f func(c *cli, args []string) int) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		cmd.SilenceErrors, cmd.SilenceUsage = true, true
		c := &cli{cmd: cmd, out: cmd.OutOrStdout(), errOut: cmd.ErrOrStderr(), command: cmd.Name()}
		if _, sub, ok := strings.Cut(cmd.CommandPath(), "github-webhook "); ok {
			c.command = sub // "previews rm"
		}
		flags := cmd.Flags()
		address, _ := flags.GetString("address")
		config, _ := flags.GetString("config")
		adapter, _ := flags.GetString("adapter")
		c.json, _ = flags.GetBool("json")
		addr, err := caddycmd.DetermineAdminAPIAddress(address, nil, config, adapter)
		if err != nil {
			c.errorf("finding the admin API's address in %s: %v", config, err)
			return exitWith(cmd, exitTrouble)
		}
		c.addr = addr
		return exitWith(cmd, f(c, args))
	}
}

// errSilent makes Caddy's main exit 1 without printing anything more.
var errSilent = errors.New("")

// exitWith makes Caddy's main exit with code.
func exitWith(cmd *cobra.Command, code int) error {
	switch code {
	case 0:
		return nil
	case 1:
		return errSilent
	}
	// Caddy's own wrapper carries an exit status over 1 to its main.
	return caddycmd.WrapCommandFuncForCobra(func(caddycmd.Flags) (int, error) { return code, nil })(cmd, nil)
}

func (c *cli) errorf(format string, args ...any) {
	fmt.Fprintf(c.errOut, "caddy github-webhook %s: %s\n", c.command, fmt.Sprintf(format, args...))
}

// adminAnswer is an answer of the admin API that is not a success.
type adminAnswer struct {
	status int
	msg    string
}

func (e *adminAnswer) Error() string { return e.msg }

// caddyAnswered matches the error of caddycmd.AdminAPIRequest for an answer
// with a status of 400 or more.
var caddyAnswered = regexp.MustCompile(`(?s)^caddy responded with error: HTTP (\d+): (.*)$`)

// request sends a request to the admin API. An answer of 400 or more is an
// *adminAnswer holding the API's message; no answer is another error.
func (c *cli) request(method, uri string, body any) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(b)
	}
	resp, err := caddycmd.AdminAPIRequest(c.addr, method, uri, nil, r)
	if err == nil {
		return resp, nil
	}
	m := caddyAnswered.FindStringSubmatch(err.Error())
	if m == nil {
		return nil, err
	}
	status, _ := strconv.Atoi(m[1])
	var e struct {
		Error string `json:"error"`
	}
	msg := strings.TrimSpace(m[2])
	if json.Unmarshal([]byte(m[2]), &e) == nil && e.Error != "" {
		msg = e.Error
	}
	return nil, &adminAnswer{status: status, msg: msg}
}

// fail prints what went wrong with a request and what to do, and returns
// the exit status.
func (c *cli) fail(err error) int {
	var ae *adminAnswer
	if errors.As(err, &ae) {
		hint := ""
		switch {
		case ae.status == http.StatusNotFound && strings.Contains(ae.msg, "no github_webhook target"):
			hint = `; "caddy github-webhook status" lists the targets`
		case ae.status == http.StatusNotFound && strings.Contains(ae.msg, "page not found"):
			hint = "; this admin API does not have that endpoint: is the running Caddy built with this version of the github_webhook module?"
		}
		c.errorf("%s (HTTP %d)%s", ae.msg, ae.status, hint)
		return exitTrouble
	}
	c.errorf("cannot reach Caddy's admin API at %s: %v; is Caddy running? Name its admin address with --address, or its configuration with --config", c.addr, err)
	return exitTrouble
}

// cliTarget is what the command line reads of a target in GET
// /github_webhook/deploys; the whole object is kept for --json.
type cliTarget struct {
	Path string `json:"path"`
	Live *struct {
		Commit  string `json:"commit"`
		Release string `json:"release"`
	} `json:"live"`
	Running *struct {
		Reason  string    `json:"reason"`
		Commit  string    `json:"commit"`
		Release string    `json:"release"`
		Since   time.Time `json:"since"`
	} `json:"running"`
	Last *struct {
		Result  string    `json:"result"`
		Error   string    `json:"error"`
		Reason  string    `json:"reason"`
		Commit  string    `json:"commit"`
		Release string    `json:"release"`
		At      time.Time `json:"at"`
	} `json:"last"`
	Checked *struct {
		Count   uint64 `json:"count"`
		Outcome string `json:"outcome"`
		Detail  string `json:"detail"`
	} `json:"checked"`
	Previews []struct {
		Number int    `json:"number"`
		Host   string `json:"host"`
		Head   string `json:"head"`
		State  string `json:"state"`
		Live   any    `json:"live"`
	} `json:"previews"`
	raw json.RawMessage
}

// deploys reads every target from the admin API.
func (c *cli) deploys() ([]cliTarget, error) {
	resp, err := c.request(http.MethodGet, "/github_webhook/deploys", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var raw []json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		return nil, fmt.Errorf("reading the admin API's answer: %w", err)
	}
	list := make([]cliTarget, len(raw))
	for i, r := range raw {
		if err := json.Unmarshal(r, &list[i]); err != nil {
			return nil, fmt.Errorf("reading the admin API's answer: %w", err)
		}
		list[i].raw = r
	}
	return list, nil
}

// target reads the targets from the admin API and returns the one named
// by path; when it cannot (the API failed, or no target has that path), it
// has said why and code is the exit status to end with.
func (c *cli) target(path string) (t cliTarget, code int, ok bool) {
	list, err := c.deploys()
	if err != nil {
		return cliTarget{}, c.fail(err), false
	}
	if t, ok = c.find(list, path); !ok {
		return cliTarget{}, exitTrouble, false
	}
	return t, 0, true
}

// find returns the target of path, compared as the admin API compares it
// (absolute, from the working folder), or prints what exists and returns
// false.
func (c *cli) find(list []cliTarget, path string) (cliTarget, bool) {
	abs, err := filepath.Abs(path)
	if err == nil {
		for _, t := range list {
			if t.Path == abs || t.Path == path {
				return t, true
			}
		}
	}
	var paths []string
	for _, t := range list {
		paths = append(paths, t.Path)
	}
	if len(paths) == 0 {
		c.errorf("no github_webhook target has path %q: this Caddy (admin API at %s) has none", path, c.addr)
	} else {
		c.errorf("no github_webhook target has path %q; the targets are: %s", path, strings.Join(paths, ", "))
	}
	return cliTarget{}, false
}

func (c *cli) printJSON(v any) {
	enc := json.NewEncoder(c.out)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func shortSHA(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}

// cliAgo says how long ago t was, for people.
func cliAgo(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

func statusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status [<path>...]",
		Short: "What is live, the deploy running and the last result of each target (exit 1 if a last deploy failed)",
		RunE: cliRun(func(c *cli, args []string) int {
			list, err := c.deploys()
			if err != nil {
				return c.fail(err)
			}
			if len(args) > 0 {
				var named []cliTarget
				for _, p := range args {
					t, ok := c.find(list, p)
					if !ok {
						return exitTrouble
					}
					named = append(named, t)
				}
				list = named
			}
			failed := 0
			for _, t := range list {
				if t.Last != nil && t.Last.Result == "error" {
					failed++
				}
			}
			if c.json {
				raw := make([]json.RawMessage, len(list))
				for i, t := range list {
					raw[i] = t.raw
				}
				c.printJSON(raw)
			} else {
				c.statusTable(list)
			}
			if failed > 0 {
				return exitFailed
			}
			return 0
		}),
	}
}

// statusTable prints one line per target, then what to do about failures.
func (c *cli) statusTable(list []cliTarget) {
	if len(list) == 0 {
		fmt.Fprintf(c.out, "no github_webhook target in the Caddy at %s\n", c.addr)
		return
	}
	w := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "PATH\tLIVE\tRESULT\tLAST DEPLOY\tRUNNING")
	for _, t := range list {
		live, result, last, running := "-", "-", "-", "-"
		if t.Live != nil && t.Live.Commit != "" {
			live = shortSHA(t.Live.Commit)
		}
		if t.Last != nil {
			result = t.Last.Result
			last = cliAgo(t.Last.At) + " (" + t.Last.Reason + ")"
		}
		if r := t.Running; r != nil {
			running = r.Reason + " since " + cliAgo(r.Since)
			if r.Commit != "" {
				running = shortSHA(r.Commit) + ", " + running
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", t.Path, live, result, last, running)
	}
	w.Flush()
	for _, t := range list {
		if t.Last == nil || t.Last.Result != "error" {
			continue
		}
		fmt.Fprintf(c.out, "\n%s: the last deploy failed", t.Path)
		if t.Last.Commit != "" {
			fmt.Fprintf(c.out, " (commit %s)", shortSHA(t.Last.Commit))
		}
		fmt.Fprintf(c.out, ": %s\n", firstLine(t.Last.Error))
		if t.Last.Release != "" {
			fmt.Fprintf(c.out, "  its build log: caddy github-webhook logs %s %s\n", t.Path, t.Last.Release)
		}
		fmt.Fprintf(c.out, "  after a fix: push, or caddy github-webhook deploy %s\n", t.Path)
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func deployCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "deploy <path>",
		Short: "Deploy a target now, as a delivery would (--wait: until it ended; exit 1 if it failed)",
	}
	wait := cmd.Flags().Bool("wait", false, "Wait until the deploy ended, and exit 1 if it failed")
	cmd.RunE = cliRun(func(c *cli, args []string) int {
		if len(args) != 1 {
			c.errorf("want one path, the target's; usage: caddy github-webhook deploy <path> [--wait]")
			return exitTrouble
		}
		t, code, ok := c.target(args[0])
		if !ok {
			return code
		}
		var before uint64
		if t.Checked != nil {
			before = t.Checked.Count
		}
		resp, err := c.request(http.MethodPost, "/github_webhook/deploy", map[string]string{"path": t.Path})
		if err != nil {
			return c.fail(err)
		}
		answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if !*wait {
			if c.json {
				c.out.Write(answer)
			} else {
				fmt.Fprintf(c.out, "%s: deploy queued\n", t.Path)
			}
			return 0
		}
		return c.waitDeploy(t.Path, before)
	})
	return cmd
}

// waitDeploy waits until the target at path has handled a wake after
// before, then prints what came of it.
func (c *cli) waitDeploy(path string, before uint64) int {
	for {
		time.Sleep(250 * time.Millisecond)
		t, code, ok := c.target(path)
		if !ok {
			return code
		}
		if t.Checked == nil || t.Checked.Count <= before || t.Running != nil {
			continue
		}
		if c.json {
			c.out.Write(append(t.raw, '\n'))
		}
		failed := slices.Contains([]string{"failed", "fetch_failed", "checks_failed"}, t.Checked.Outcome)
		if !c.json {
			switch {
			case failed && t.Last != nil:
				fmt.Fprintf(c.out, "%s: %s: %s\n", path, t.Checked.Outcome, firstLine(t.Last.Error))
				if t.Last.Release != "" {
					fmt.Fprintf(c.out, "  its build log: caddy github-webhook logs %s %s\n", path, t.Last.Release)
				}
			case t.Checked.Detail != "":
				fmt.Fprintf(c.out, "%s: %s: %s\n", path, t.Checked.Outcome, t.Checked.Detail)
			default:
				live := "-"
				if t.Live != nil {
					live = shortSHA(t.Live.Commit)
				}
				fmt.Fprintf(c.out, "%s: %s; live: %s\n", path, t.Checked.Outcome, live)
			}
		}
		if failed {
			return exitFailed
		}
		return 0
	}
}

func rollbackCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "rollback <path> [<release>]",
		Short: "Switch a target's current to a kept release (default: the newest older than the live one)",
		RunE: cliRun(func(c *cli, args []string) int {
			if len(args) < 1 || len(args) > 2 {
				c.errorf("want a path and, optionally, a release; usage: caddy github-webhook rollback <path> [<release>]")
				return exitTrouble
			}
			t, code, ok := c.target(args[0])
			if !ok {
				return code
			}
			req := map[string]string{"path": t.Path}
			if len(args) == 2 {
				req["release"] = args[1]
			}
			resp, err := c.request(http.MethodPost, "/github_webhook/rollback", req)
			if err != nil {
				var ae *adminAnswer
				if errors.As(err, &ae) && (ae.status == http.StatusNotFound || ae.status == http.StatusConflict) {
					c.errorf("%s: %s; \"caddy github-webhook status --json %s\" lists its releases", t.Path, ae.msg, t.Path)
					return exitTrouble
				}
				return c.fail(err)
			}
			defer resp.Body.Close()
			answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			if c.json {
				c.out.Write(answer)
				return 0
			}
			var a struct {
				Live struct {
					Commit  string `json:"commit"`
					Release string `json:"release"`
				} `json:"live"`
			}
			json.Unmarshal(answer, &a)
			fmt.Fprintf(c.out, "%s: live is now %s (commit %s)\n", t.Path, a.Live.Release, shortSHA(a.Live.Commit))
			return 0
		}),
	}
}

func logsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "logs [-f] <path> [<release>]",
		Short: "Print a build log (default: the running build's, else the last deploy's); -f follows the running build",
	}
	follow := cmd.Flags().BoolP("follow", "f", false, "Follow the running build's log until the build ends")
	cmd.RunE = cliRun(func(c *cli, args []string) int {
		if len(args) < 1 || len(args) > 2 {
			c.errorf("want a path and, optionally, a release; usage: caddy github-webhook logs [-f] <path> [<release>]")
			return exitTrouble
		}
		t, code, ok := c.target(args[0])
		if !ok {
			return code
		}
		q := url.Values{"path": {t.Path}}
		if len(args) == 2 {
			q.Set("release", args[1])
		}
		if *follow {
			q.Set("follow", "1")
		}
		resp, err := c.request(http.MethodGet, "/github_webhook/logs?"+q.Encode(), nil)
		if err != nil {
			var ae *adminAnswer
			if errors.As(err, &ae) && ae.status == http.StatusNotFound {
				c.errorf("%s; \"caddy github-webhook status --json %s\" lists its releases", ae.msg, t.Path)
				return exitTrouble
			}
			return c.fail(err)
		}
		defer resp.Body.Close()
		if _, err := io.Copy(c.out, resp.Body); err != nil {
			c.errorf("reading the log: %v", err)
			return exitTrouble
		}
		return 0
	})
	return cmd
}

func previewsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "previews <path>",
		Short: "List the previews of pull requests of a target",
		RunE: cliRun(func(c *cli, args []string) int {
			if len(args) != 1 {
				c.errorf("want one path; usage: caddy github-webhook previews <path>, or previews rm <path> <number>")
				return exitTrouble
			}
			t, code, ok := c.target(args[0])
			if !ok {
				return code
			}
			if c.json {
				var obj struct {
					Previews json.RawMessage `json:"previews"`
				}
				json.Unmarshal(t.raw, &obj)
				if len(obj.Previews) == 0 || string(obj.Previews) == "null" {
					obj.Previews = json.RawMessage("[]")
				}
				c.printJSON(obj.Previews)
				return 0
			}
			if len(t.Previews) == 0 {
				fmt.Fprintf(c.out, "%s has no previews\n", t.Path)
				return 0
			}
			w := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NUMBER\tHOST\tHEAD\tSTATE")
			for _, p := range t.Previews {
				fmt.Fprintf(w, "#%d\t%s\t%s\t%s\n", p.Number, p.Host, shortSHA(p.Head), p.State)
			}
			w.Flush()
			return 0
		}),
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "rm <path> <number>",
		Short: "Remove the preview of a pull request",
		RunE: cliRun(func(c *cli, args []string) int {
			if len(args) != 2 {
				c.errorf("want a path and a pull request's number; usage: caddy github-webhook previews rm <path> <number>")
				return exitTrouble
			}
			number, err := strconv.Atoi(strings.TrimPrefix(args[1], "#"))
			if err != nil || number <= 0 {
				c.errorf("%q is not a pull request's number", args[1])
				return exitTrouble
			}
			path := args[0]
			if abs, err := filepath.Abs(path); err == nil {
				path = abs
			}
			resp, err := c.request(http.MethodDelete, "/github_webhook/previews", map[string]any{"path": path, "number": number})
			if err != nil {
				return c.fail(err)
			}
			defer resp.Body.Close()
			if c.json {
				io.Copy(c.out, io.LimitReader(resp.Body, 1<<20))
				return 0
			}
			fmt.Fprintf(c.out, "%s: removed the preview of #%d\n", path, number)
			return 0
		}),
	})
	return cmd
}
