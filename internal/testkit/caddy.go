package testkit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// CaddyOptions says how StartCaddy runs a Caddy process.
type CaddyOptions struct {
	// Binary is the Caddy binary to run. When empty, StartCaddy builds
	// this module's ./cmd/caddy with Binary.
	Binary string

	// Dir is the process's working folder. The configuration that Config
	// returns is written there, and so is the process's output when Output
	// is empty. It is made if missing.
	Dir string

	// Admin is the admin endpoint, 127.0.0.1:<port>, that the configuration
	// names. When empty, StartCaddy takes a port the kernel picked and
	// passes it to Config.
	Admin string

	// Config returns the configuration, given the admin endpoint it must
	// name: a Caddyfile, or JSON when Adapter is "json". It is written to
	// Dir/Caddyfile (Dir/caddy.json).
	Config func(admin string) string

	// ConfigFile, when set, is an existing configuration file to run (a
	// restart of a process with the same configuration); Config is not
	// called then.
	ConfigFile string

	// Adapter is the configuration's format: "caddyfile" (the default) or
	// "json".
	Adapter string

	// Env is the process's environment; os.Environ() when nil.
	Env []string

	// Attr is the process's attributes (the user it runs as, say). On
	// Linux, StartCaddy adds a parent-death signal (SIGKILL): no Caddy
	// outlives the program that started it.
	Attr *syscall.SysProcAttr

	// OwnGroup starts Caddy in a process group of its own, so that a
	// Ctrl-C in the terminal reaches only the program that started it,
	// which then stops Caddy itself (Unix).
	OwnGroup bool

	// Output is the file that receives the process's standard output and
	// error (created, or truncated). When empty, a new file caddy-*.log in
	// Dir.
	Output string

	// Expect, when not empty, must be in the configuration that the admin
	// endpoint answers with: proof that the Caddy answering at Admin is this
	// one, as another process could have taken the port between the kernel
	// picking it and Caddy listening. A folder that only this configuration
	// names will do.
	Expect string

	// Ready are addresses (the site's, host:port) that must accept TCP
	// connections before StartCaddy returns; no request is sent to them.
	Ready []string

	// Wait bounds how long StartCaddy waits for the admin endpoint and the
	// Ready addresses: 30 s when zero.
	Wait time.Duration
}

// Caddy is a Caddy process that StartCaddy started. Stop or Kill it, by
// its process id, when done.
type Caddy struct {
	Admin   string    // its admin endpoint, host:port
	Config  string    // its configuration file
	Output  string    // the file holding its standard output and error
	Started time.Time // when the process was started

	adapter string
	binary  string
	dir     string
	env     []string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error // the process's exit; set when done is closed
}

// StartCaddy writes Caddy's configuration, runs "caddy run" on it, and
// returns once the admin endpoint answers with that configuration and
// every Ready address accepts connections. If that fails, the process is
// killed and the error holds the end of its output.
func StartCaddy(ctx context.Context, o CaddyOptions) (*Caddy, error) {
	if o.Dir == "" {
		if o.ConfigFile == "" {
			return nil, errors.New("starting caddy: neither a folder nor a configuration file")
		}
		o.Dir = filepath.Dir(o.ConfigFile)
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("starting caddy: %w", err)
	}
	if o.Binary == "" {
		bins, err := Binary(ctx, "./cmd/caddy")
		if err != nil {
			return nil, err
		}
		o.Binary = bins[0]
	}
	if o.Adapter == "" {
		o.Adapter = "caddyfile"
	}
	if o.Admin == "" {
		ports, err := FreePorts(1)
		if err != nil {
			return nil, err
		}
		o.Admin = fmt.Sprintf("127.0.0.1:%d", ports[0])
	}
	if o.ConfigFile == "" {
		if o.Config == nil {
			return nil, errors.New("starting caddy: no configuration")
		}
		name := "Caddyfile"
		if o.Adapter == "json" {
			name = "caddy.json"
		}
		o.ConfigFile = filepath.Join(o.Dir, name)
		if err := os.WriteFile(o.ConfigFile, []byte(o.Config(o.Admin)), 0o644); err != nil {
			return nil, fmt.Errorf("writing caddy's configuration: %w", err)
		}
	}
	var out *os.File
	var err error
	if o.Output == "" {
		out, err = os.CreateTemp(o.Dir, "caddy-*.log")
	} else {
		out, err = os.Create(o.Output)
	}
	if err != nil {
		return nil, fmt.Errorf("making caddy's output file: %w", err)
	}
	defer out.Close() // the process has its own copy
	if o.Env == nil {
		o.Env = os.Environ()
	}
	if o.Wait == 0 {
		o.Wait = 30 * time.Second
	}

	c := &Caddy{Admin: o.Admin, Config: o.ConfigFile, Output: out.Name(), adapter: o.Adapter,
		binary: o.Binary, dir: o.Dir, env: o.Env, done: make(chan struct{})}
	c.cmd = exec.Command(o.Binary, "run", "--config", o.ConfigFile, "--adapter", o.Adapter)
	c.cmd.Dir, c.cmd.Env = o.Dir, o.Env
	c.cmd.Stdout, c.cmd.Stderr = out, out
	c.cmd.SysProcAttr = procAttr(o.Attr, o.OwnGroup)
	c.Started = time.Now()
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting caddy: %w", err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	if err := c.waitReady(ctx, o); err != nil {
		c.Kill()
		return nil, err
	}
	return c, nil
}

// waitReady waits until the admin endpoint answers with a configuration
// holding o.Expect and every o.Ready address accepts connections.
func (c *Caddy) waitReady(ctx context.Context, o CaddyOptions) error {
	ctx, cancel := context.WithTimeout(ctx, o.Wait)
	defer cancel()
	client := &http.Client{Timeout: 5 * time.Second}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	wait := func(what string, last error) error {
		select {
		case <-c.done:
			return fmt.Errorf("caddy exited at start (%v): %s", c.err, c.Tail(4000))
		case <-ctx.Done():
			return fmt.Errorf("waited %v for %s: %v: %s", o.Wait, what, last, c.Tail(4000))
		case <-tick.C:
			return nil
		}
	}
	for {
		body, err := get(ctx, client, "http://"+c.Admin+"/config/")
		if err == nil {
			if o.Expect != "" && !strings.Contains(body, o.Expect) {
				return fmt.Errorf("another Caddy answers on %s: its configuration does not name %s", c.Admin, o.Expect)
			}
			break
		}
		if err := wait("caddy's admin endpoint "+c.Admin, err); err != nil {
			return err
		}
	}
	for _, addr := range o.Ready {
		for {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				conn.Close()
				break
			}
			if err := wait("caddy to listen on "+addr, err); err != nil {
				return err
			}
		}
	}
	return nil
}

// get returns the body of a GET of url that answered 200.
func get(ctx context.Context, client *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), nil
}

// PID returns the process id.
func (c *Caddy) PID() int { return c.cmd.Process.Pid }

// Done is closed when the process has exited; Err says how.
func (c *Caddy) Done() <-chan struct{} { return c.done }

// Err returns the process's exit error once Done is closed (nil: exit
// status 0), and nil before.
func (c *Caddy) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// Running reports whether the process has not exited.
func (c *Caddy) Running() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// Stop sends sig to the process and waits for it to exit. If it has not
// within grace, Stop kills it and says so. A process that exited already
// is no error.
func (c *Caddy) Stop(sig os.Signal, grace time.Duration) error {
	if err := c.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		c.Kill()
		return fmt.Errorf("stopping caddy (pid %d): %w", c.PID(), err)
	}
	select {
	case <-c.done:
		return nil
	case <-time.After(grace):
		c.Kill()
		return fmt.Errorf("caddy (pid %d) did not exit within %v of %v", c.PID(), grace, sig)
	}
}

// Kill sends SIGKILL to the process and waits for it to be gone.
func (c *Caddy) Kill() {
	c.cmd.Process.Kill()
	<-c.done
}

// Reload runs "caddy reload" with config (in the process's format) as the
// new configuration, written to a new file in the process's folder.
func (c *Caddy) Reload(ctx context.Context, config string) error {
	f, err := os.CreateTemp(c.dir, "reload-*."+c.adapter)
	if err == nil {
		_, err = f.WriteString(config)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("writing the new configuration: %w", err)
	}
	cmd := exec.CommandContext(ctx, c.binary, "reload", "--config", f.Name(), "--adapter", c.adapter, "--address", c.Admin)
	cmd.Dir, cmd.Env = c.dir, c.env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("caddy reload: %w\n%s", err, out)
	}
	return nil
}

// Out returns what the process has written to its standard output and error
// so far.
func (c *Caddy) Out() string {
	b, err := os.ReadFile(c.Output)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// Tail returns the last n bytes of Out, spaces trimmed.
func (c *Caddy) Tail(n int) string {
	s := c.Out()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return strings.TrimSpace(s)
}

// Log returns the entries of Caddy's JSON log in its output. Caddy logs
// there unless its configuration sends the log elsewhere.
func (c *Caddy) Log() []LogEntry {
	entries, _ := ParseLog(strings.NewReader(c.Out()))
	return entries
}
