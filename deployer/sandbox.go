package deployer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// homeName is the folder under Path that sandboxed commands get as their
// HOME. It outlives releases, so that tools can keep their caches there.
const homeName = "home"

// sandboxKeep names the variables of the process's environment that
// sandboxed commands keep; LC_* too. Everything else they get is set by
// the deployer: HOME, Config.Env and DEPLOY_*.
var sandboxKeep = []string{"PATH", "LANG", "LANGUAGE", "TZ"}

// defaultPath is the PATH of sandboxed commands when the process has none.
const defaultPath = "/usr/local/bin:/usr/bin:/bin"

// NetworkNone is the value of Config.SandboxNetwork that gives sandboxed
// commands no network at all: only a loopback interface of their own.
const NetworkNone = "none"

// sandboxUID and sandboxGID are the user and group, on the host, that
// sandboxed commands run as when Caddy runs as root: nobody and nogroup,
// which own nothing that a build could change or read beyond what every
// user can. Builds of every site share them; their mount, PID, IPC and
// network namespaces keep them apart.
const (
	sandboxUID = 65534
	sandboxGID = 65534
)

// systemRoots are the system's program and library folders, bound
// read-only (or recreated as the symlinks they are, on a merged /usr).
var systemRoots = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}

// etcSecrets are the files and folders of /etc that sandboxed commands do
// not see (glob patterns): password hashes, sudo's rules, the host's ssh
// and TLS keys, Caddy's own configuration, certificates' keys, stored
// credentials. The unprivileged user cannot read most of them anyway;
// hiding them also holds when Caddy does not run as root.
var etcSecrets = []string{
	"/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-",
	"/etc/security/opasswd", "/etc/sudoers", "/etc/sudoers.d",
	"/etc/ssh/ssh_host_*key", "/etc/ssl/private", "/etc/pki/tls/private",
	"/etc/caddy", "/etc/letsencrypt", "/etc/credstore", "/etc/credstore.encrypted",
	"/etc/wireguard", "/etc/NetworkManager/system-connections", "/etc/ipsec.d/private",
	"/etc/kubernetes", "/etc/docker/key.json", "/etc/netplan",
}

// toolchainSecrets are files, inside a toolchain folder that PATH brings
// in, that hold credentials rather than tools (cargo's registry token).
var toolchainSecrets = []string{"credentials", "credentials.toml", ".credentials.toml"}

// errNoBwrap is the error of a sandboxed deploy on a host without bwrap.
var errNoBwrap = errors.New("sandbox: bwrap not found: install bubblewrap (apt install bubblewrap)")

// errNoNetworkHelper is the error of a sandboxed deploy with a network on
// a host with neither pasta nor slirp4netns.
var errNoNetworkHelper = errors.New("sandbox: neither slirp4netns nor pasta found: install slirp4netns (apt install slirp4netns) or passt, or give builds no network (sandbox { network none })")

// sandbox runs the commands of one deploy under bubblewrap. See
// Config.Sandbox for what the commands can reach.
type sandbox struct {
	bwrap string
	args  []string // bwrap's options, but those of one run's network
	drop  []string // what runs the command as sandboxUID, when Caddy is root
	home  string
	// net is the program that gives the command's network namespace its
	// outbound network (pasta or slirp4netns); empty: no network.
	net string
	// nsenter runs slirp4netns in the user namespace of the sandbox when
	// Caddy does not run as root; empty as root and for pasta.
	nsenter string
	// owned are the folders chowned to sandboxUID for the build; release is
	// given back to Caddy's user once the commands ended.
	release string
	owned   []string
}

// newSandbox prepares the sandbox of release (a folder of path/releases),
// with the existing folders writable (such as the cache home) writable in
// it too, and checks that bwrap starts with it, so that a host that cannot
// run bwrap fails with bwrap's own reason and not as a failed build. When
// Caddy runs as root, it gives release, the home and writable to the
// unprivileged user: call restore once the commands ended.
func newSandbox(ctx context.Context, cfg Config, path, repo, release string, writable ...string) (*sandbox, error) {
	if err := platformError(runtime.GOOS, cfg); err != nil {
		return nil, err // Validate refused it already
	}
	bwrap, err := exec.LookPath("bwrap")
	if err != nil {
		return nil, errNoBwrap
	}
	home := filepath.Join(path, homeName)
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, fmt.Errorf("sandbox: creating the home folder: %w", err)
	}
	s := &sandbox{bwrap: bwrap, home: home, release: release}
	if cfg.SandboxNetwork != NetworkNone {
		// slirp4netns first: it adds about 135 ms to a command's start,
		// Debian 12's pasta about 450 ms (BenchmarkSandboxStart); both
		// keep the host's loopback out of reach.
		if s.net, err = exec.LookPath("slirp4netns"); err != nil {
			if s.net, err = exec.LookPath("pasta"); err != nil {
				return nil, errNoNetworkHelper
			}
		}
	}
	root := os.Geteuid() == 0
	if !root {
		if err := s.checkUnprivileged(bwrap); err != nil {
			return nil, err
		}
	}
	var extra []string // files bound read-only beside the allow-list
	if root {
		setpriv, err := exec.LookPath("setpriv")
		if err == nil {
			setpriv, err = filepath.EvalSymlinks(setpriv)
		}
		if err != nil || !filepath.IsAbs(setpriv) || within("/tmp", setpriv) {
			return nil, errors.New("sandbox: setpriv not found, which runs builds as an unprivileged user when Caddy runs as root: install util-linux")
		}
		extra = append(extra, setpriv)
		// setpriv, with the only capabilities bwrap keeps, switches to the
		// unprivileged user, which then has no capability at all, none to
		// regain (bwrap sets no_new_privs: setuid files do not elevate).
		s.drop = []string{setpriv, "--reuid=" + strconv.Itoa(sandboxUID), "--regid=" + strconv.Itoa(sandboxGID),
			"--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--"}
		s.owned = append([]string{release, home}, writable...)
		for _, dir := range s.owned {
			if err := chownTree(dir, sandboxUID, sandboxGID, dir != release); err != nil {
				s.restore()
				return nil, fmt.Errorf("sandbox: giving %s to the build's user: %w", dir, err)
			}
		}
	}
	s.args = bwrapArgs(sandboxMounts{
		path: path, repo: repo, release: release, home: home,
		hide: hidden(cfg), writable: writable, files: extra,
		toolchains: pathEntries(s.env(cfg, os.Environ())),
	}, root)

	var out bytes.Buffer
	// The check runs without the network helper: bwrap's own start is what
	// it checks.
	probe := command(ctx, release, s.env(cfg, nil), &out, &out, s.argv([]string{"true"}))
	if err := runCommand(ctx, probe, nil, nil); err != nil {
		s.restore()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("sandbox: starting bwrap: %w", err)
		}
		msg := strings.TrimSpace(out.String())
		if len(msg) > 500 {
			msg = msg[:500] + "…"
		}
		if hint := userNamespacesHint(msg); !root && hint != "" {
			return nil, fmt.Errorf("sandbox: bwrap cannot start: %w: %s: %s", err, msg, hint)
		}
		return nil, fmt.Errorf("sandbox: bwrap cannot start: %w: %s", err, msg)
	}
	return s, nil
}

// checkUnprivileged checks, when Caddy does not run as root, what the
// sandbox then needs of the host, so that a deploy fails at once with what
// is missing and what to do: user namespaces that an ordinary user may
// make (unless bwrap is setuid), and, with a network, a bwrap that is not
// setuid, /dev/net/tun open to Caddy's user, and nsenter (util-linux) to
// run slirp4netns in the builds' user namespace.
func (s *sandbox) checkUnprivileged(bwrap string) error {
	setuid := bwrapSetuid(bwrap)
	if !setuid {
		if err := userNamespacesError(); err != nil {
			return err
		}
	}
	if s.net == "" {
		return nil
	}
	if setuid {
		// It makes the network namespace in the host's user namespace,
		// where Caddy's user has no capability.
		return fmt.Errorf("sandbox: %s is setuid root, and makes the builds' network namespace where the network helper cannot enter it when Caddy does not run as root: use a bwrap that is not setuid (as Debian's), on a host that allows unprivileged user namespaces, or give builds no network (sandbox { network none })", bwrap)
	}
	if err := tunError(); err != nil {
		return err
	}
	if filepath.Base(s.net) == "slirp4netns" {
		nsenter, err := exec.LookPath("nsenter")
		if err != nil {
			return errors.New("sandbox: nsenter not found, which runs slirp4netns in the builds' user namespace when Caddy does not run as root: install util-linux")
		}
		s.nsenter = nsenter
	}
	return nil
}

// restore gives the release back to Caddy's user once the build ended (a
// chown that also clears any setuid and setgid bit the build set), so that
// no process of the unprivileged user on the host can change what goes
// live. The home and the cache home stay the build's.
func (s *sandbox) restore() error {
	if len(s.owned) == 0 {
		return nil
	}
	if err := chownTree(s.release, os.Geteuid(), os.Getegid(), false); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("sandbox: giving the release back to Caddy's user: %w", err)
	}
	return nil
}

// chownTree gives dir and everything in it to uid and gid, never following
// a symlink. With skipOwned, a folder that uid owns already, with all of
// its entries, is taken as given in full (dir itself goes last): the home
// and the cache home are walked once, not at every build.
func chownTree(dir string, uid, gid int, skipOwned bool) error {
	if skipOwned && ownedBy(dir, uid) {
		return nil
	}
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		return err
	}
	return os.Lchown(dir, uid, gid)
}

// ownedBy reports whether uid owns dir and each of its entries.
func ownedBy(dir string, uid int) bool {
	if owner(dir) != uid {
		return false
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if owner(filepath.Join(dir, e.Name())) != uid {
			return false
		}
	}
	return true
}

// sandboxMounts is what bwrapArgs binds besides the system's folders.
type sandboxMounts struct {
	path, release, home string
	repo                string   // the cache repository, bound read-only
	hide                []string // files and folders masked wherever they are
	writable            []string // more folders under path, bound writable
	files               []string // files bound read-only (setpriv)
	toolchains          []string // PATH's folders
}

// bwrapArgs returns bwrap's options for a command of m.release, without
// the final "--". The sandbox starts from an empty root and gets, as an
// allow-list: the system's program and library folders and /etc less its
// secrets, read-only; the toolchains that PATH names, read-only; the cache
// repository, read-only (builds read the history); the release, the home
// and m.writable, writable; a private /dev, /proc and /tmp. Nothing else of
// path, nor of other sites, nor of Caddy's storage. Then no capabilities
// (root keeps only those that setpriv needs to drop to sandboxUID), and
// PID, IPC and network namespaces of its own.
func bwrapArgs(m sandboxMounts, root bool) []string {
	var args []string
	bound := []string{} // real folders bound so far, to skip what is inside
	for _, r := range systemRoots {
		fi, err := os.Lstat(r)
		switch {
		case err != nil:
			continue
		case fi.Mode()&fs.ModeSymlink != 0:
			if target, err := os.Readlink(r); err == nil {
				args = append(args, "--symlink", target, r)
			}
		case fi.IsDir():
			args = append(args, "--ro-bind", r, r)
			bound = append(bound, r)
		}
	}
	args = append(args, "--ro-bind", "/etc", "/etc")
	bound = append(bound, "/etc")
	// A resolv.conf or localtime that links out of /etc (systemd-resolved's
	// stub file in /run) comes with its target.
	for _, f := range []string{"/etc/resolv.conf", "/etc/hosts", "/etc/localtime"} {
		if real, err := filepath.EvalSymlinks(f); err == nil && real != f && !withinAny(bound, real) {
			args = append(args, "--ro-bind", real, real)
		}
	}
	for _, f := range m.files {
		if !withinAny(bound, f) {
			args = append(args, "--ro-bind", f, f)
		}
	}
	// Toolchains: each folder of PATH outside the system's, read-only; for
	// a bin folder, its parent (a toolchain's root: nvm's node/vX, whose
	// bin/npm links to ../lib), unless that is a home folder.
	forbidden := append([]string{m.path, "/tmp", "/proc", "/dev", "/sys", "/run", "/var/run"}, m.hide...)
	var toolRoots []string
	for _, dir := range m.toolchains {
		real, err := filepath.EvalSymlinks(dir)
		if err != nil || !filepath.IsAbs(real) {
			continue
		}
		if fi, err := os.Stat(real); err != nil || !fi.IsDir() {
			continue
		}
		if b := filepath.Base(real); b == "bin" || b == "sbin" {
			if parent := filepath.Dir(real); !isHomeOrTop(parent) {
				real = parent
			}
		}
		if real == "/" || withinAny(bound, real) || withinAny(forbidden, real) || containsAny(real, forbidden) {
			continue
		}
		toolRoots = append(toolRoots, real)
	}
	// One bind for a folder and those inside it.
	slices.Sort(toolRoots)
	toolRoots = slices.Compact(toolRoots)
	var binds []string // where bwrap mounts something, for the folders above
	for _, r := range toolRoots {
		if !withinAny(bound, r) {
			bound = append(bound, r)
			binds = append(binds, r)
		}
	}
	toolRoots = binds
	binds = append(binds, m.repo, m.release, m.home)
	binds = append(binds, m.writable...)
	// bwrap makes the folders above a bind's target with mode 0700 (as
	// root): made here first, with 0755, the unprivileged user can reach
	// what is bound in them.
	made := map[string]bool{"/": true}
	for _, b := range binds {
		var above []string
		for d := filepath.Dir(b); !made[d] && !withinAny(bound, d); d = filepath.Dir(d) {
			above = append(above, d)
			made[d] = true
		}
		slices.Reverse(above)
		for _, d := range above {
			args = append(args, "--perms", "0755", "--dir", d)
		}
	}
	for _, r := range toolRoots {
		args = append(args, "--ro-bind", r, r)
	}
	var hide []string
	for _, pattern := range etcSecrets {
		matches, _ := filepath.Glob(pattern)
		hide = append(hide, matches...)
	}
	for _, r := range toolRoots {
		for _, name := range toolchainSecrets {
			hide = append(hide, filepath.Join(r, name))
		}
	}
	hide = append(hide, m.hide...)
	var readOnly []string // masking folders, made read-only once in place
	for _, h := range hide {
		fi, err := os.Stat(h)
		if err != nil {
			continue // nothing there to see
		}
		if real, err := filepath.EvalSymlinks(h); err == nil {
			h = real
		}
		if !withinAny(bound, h) {
			continue // not in the sandbox in the first place
		}
		if fi.IsDir() {
			args = append(args, "--tmpfs", h)
			readOnly = append(readOnly, h)
		} else {
			args = append(args, "--ro-bind", "/dev/null", h)
		}
	}
	args = append(args,
		"--dev", "/dev",
		"--proc", "/proc",
		"--perms", "1777", "--tmpfs", "/tmp",
		"--ro-bind", m.repo, m.repo,
		"--bind", m.release, m.release,
		"--bind", m.home, m.home,
	)
	for _, w := range m.writable {
		args = append(args, "--bind", w, w)
	}
	for _, h := range readOnly {
		args = append(args, "--remount-ro", h)
	}
	// The root itself, and the folders bwrap made in it to hold the binds
	// (path, path/releases), are read-only too.
	args = append(args, "--remount-ro", "/",
		// Its own PID namespace: the command sees no other process, and
		// when it ends, its PID 1 (bwrap's) ends and the kernel kills every
		// process left in the namespace, setsid or not.
		"--unshare-pid",
		"--unshare-ipc",
		// Its own network namespace: only a loopback of its own, to which
		// the network helper adds an outbound interface that does not lead
		// to the host's loopback (see attachNetwork).
		"--unshare-net",
		// When the deploy kills bwrap (timeout, Caddy stopping), the
		// namespace's PID 1 gets SIGKILL.
		"--die-with-parent",
		// Run as root, bwrap would keep root's capabilities, with which a
		// command undoes the mounts (umount, remount read-write).
		"--cap-drop", "ALL",
	)
	if root {
		// setpriv needs these to become sandboxUID, which then has none.
		args = append(args, "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP")
	}
	// No --new-session: bwrap and the command stay in the process group
	// that run made (in a session of its own, with no terminal), so that
	// run's renice and kill reach them.
	return append(args, "--chdir", m.release)
}

// pathEntries returns the folders of PATH in env.
func pathEntries(env []string) []string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			return filepath.SplitList(v)
		}
	}
	return nil
}

// isHomeOrTop reports whether dir is a home folder (/root, /home/x), a
// folder at the top of the file system, or /usr/local or /opt's own level:
// a bin folder there is bound alone, not its parent.
func isHomeOrTop(dir string) bool {
	if dir == "/" || filepath.Dir(dir) == "/" || filepath.Dir(dir) == "/home" {
		return true
	}
	if home, err := os.UserHomeDir(); err == nil && filepath.Clean(home) == dir {
		return true
	}
	return false
}

// hidden returns the absolute, existing or not, paths that cfg hides.
func hidden(cfg Config) []string {
	hide := append([]string(nil), cfg.Hide...)
	if cfg.SSHKey != "" {
		if abs, err := filepath.Abs(cfg.SSHKey); err == nil {
			hide = append(hide, abs)
		}
	}
	return hide
}

// argv returns the command line that runs command in the sandbox, without
// the options of a network.
func (s *sandbox) argv(command []string) []string {
	argv := append(append([]string{s.bwrap}, s.args...), "--")
	return append(append(argv, s.drop...), command...)
}

// run runs command in the sandbox as run would, with the network that
// Config.SandboxNetwork asks for: bwrap holds the command (--block-fd)
// until the network helper has attached an interface to its namespace.
func (s *sandbox) run(ctx context.Context, dir string, env []string, stdout, stderr io.Writer, onStart func(pgid int), argv []string) error {
	if s.net == "" {
		return runCommand(ctx, command(ctx, dir, env, stdout, stderr, s.argv(argv)), onStart, nil)
	}
	infoR, infoW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("sandbox: network: %w", err)
	}
	defer infoR.Close()
	blockR, blockW, err := os.Pipe()
	if err != nil {
		infoW.Close()
		return fmt.Errorf("sandbox: network: %w", err)
	}
	defer blockW.Close()
	full := append(append([]string{s.bwrap}, s.args...), "--info-fd", "3", "--block-fd", "4", "--")
	full = append(append(full, s.drop...), argv...)
	cmd := command(ctx, dir, env, stdout, stderr, full)
	cmd.ExtraFiles = []*os.File{infoW, blockR} // 3 and 4
	return runCommand(ctx, cmd, onStart, func() (func(), error) {
		infoW.Close()
		blockR.Close()
		helper, err := s.attachNetwork(ctx, infoR)
		if err != nil {
			return nil, fmt.Errorf("sandbox: network: %w", err)
		}
		if _, err := blockW.Write([]byte{1}); err != nil {
			helper.stop()
			return nil, fmt.Errorf("sandbox: network: releasing the command: %w", err)
		}
		return helper.stop, nil
	})
}

// netStartTimeout bounds how long the network helper may take to set the
// namespace up.
const netStartTimeout = 30 * time.Second

// netHelper is a running pasta or slirp4netns.
type netHelper struct {
	cmd    *exec.Cmd
	exit   *os.File // slirp4netns's --exit-fd, nil for pasta
	stderr tailBuffer
}

// stop ends the helper; its namespace is gone or going.
func (h *netHelper) stop() {
	if h.exit != nil {
		h.exit.Close()
	}
	h.cmd.Process.Kill()
	h.cmd.Wait()
}

// attachNetwork reads the sandbox's PID from bwrap's --info-fd, starts the
// network helper on its network namespace, and returns once the helper has
// configured it. The namespace gets a default route to the outside but no
// path to the host's loopback:
//   - pasta: no port forwarding either way (-t, -u, -T, -U none: with -T
//     auto, pasta would forward the namespace's 127.0.0.1:port to the
//     host's), and --no-map-gw, so that the gateway's address is not the
//     host;
//   - slirp4netns: --disable-host-loopback (10.0.2.2 is not the host's
//     127.0.0.1).
//
// The helper runs in the foreground as Caddy's child, dies with Caddy
// (parent-death signal) and is killed when the command ended.
func (s *sandbox) attachNetwork(ctx context.Context, info io.Reader) (*netHelper, error) {
	var st struct {
		ChildPID int `json:"child-pid"`
	}
	if err := json.NewDecoder(io.LimitReader(info, 64<<10)).Decode(&st); err != nil || st.ChildPID <= 0 {
		return nil, fmt.Errorf("reading the sandbox's process from bwrap: %v", err)
	}
	// bwrap's child brings its loopback up after it wrote the PID: a
	// helper that did so too at the same time would make one of them fail.
	// As an ordinary user, bwrap's child then writes the user and group
	// maps of its user namespace: a helper that entered it before would
	// be nobody there, without capabilities.
	root := os.Geteuid() == 0
	if err := waitNamespaces(ctx, st.ChildPID, !root); err != nil {
		return nil, err
	}
	// The helper joins the namespace by a file that Caddy opened: pasta,
	// as root, drops the capability to open another process's namespace.
	nsFile, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", st.ChildPID))
	if err != nil {
		return nil, fmt.Errorf("opening the sandbox's network namespace: %w", err)
	}
	defer nsFile.Close()
	files := []*os.File{nil, nsFile} // 3 (below), 4
	if !root {
		// As an ordinary user, the helper needs the capabilities of the
		// user namespace that owns the network namespace: bwrap's outer
		// one, where Caddy's user is root. The sandbox's process is in
		// another, nested in it (bwrap maps the build's user back), where
		// the helper could not enter the network namespace.
		owner, err := namespaceOwner(nsFile)
		if err != nil {
			return nil, err
		}
		defer owner.Close()
		files = append(files, owner) // 5
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer readyR.Close()
	files[0] = readyW
	var exitR, exitW *os.File
	program, args := s.net, []string(nil)
	if filepath.Base(s.net) == "pasta" {
		args = []string{"-f", "-q", "--config-net", "--no-map-gw",
			"-t", "none", "-u", "none", "-T", "none", "-U", "none",
			"-P", fdPath(3), // written once pasta is set up
			"--netns", fdPath(4)}
		if root {
			args = append(args, "--runas", "0:0", "--netns-only")
		} else {
			args = append(args, "--userns", fdPath(5))
		}
	} else {
		// slirp4netns ends when exit-fd closes: when the command ended, or
		// when Caddy died.
		if exitR, exitW, err = os.Pipe(); err != nil {
			return nil, err
		}
		defer exitR.Close()
		files = append(files, exitR) // 5 or 6
		exitFD := strconv.Itoa(2 + len(files))
		// --enable-sandbox: its own mount namespace and no capability but
		// binding low ports; --enable-seccomp: few syscalls.
		args = []string{"--configure", "--mtu=65520", "--disable-host-loopback", "--enable-sandbox", "--enable-seccomp",
			"--ready-fd=3", "--exit-fd=" + exitFD, "--netns-type=path", fdPath(4), "tap0"}
		if !root {
			// As an ordinary user, slirp4netns's own sandbox would enter the
			// user namespace of the sandbox's process and become its root,
			// which that namespace does not map: it runs instead as root of
			// the owning user namespace, where Caddy's user is root, and
			// sets its sandbox up as it does when Caddy is root.
			args = append([]string{"--user=" + fdPath(5), "--preserve-credentials", "--", s.net}, args...)
			program = s.nsenter
		}
	}
	h := &netHelper{cmd: exec.Command(program, args...), exit: exitW}
	h.cmd.Env = []string{"PATH=" + defaultPath}
	h.cmd.Stderr = &h.stderr
	h.cmd.ExtraFiles = files
	h.cmd.SysProcAttr = helperAttr()
	err = h.cmd.Start()
	readyW.Close()
	if err != nil {
		if exitW != nil {
			exitW.Close()
		}
		return nil, fmt.Errorf("starting %s: %w", filepath.Base(s.net), err)
	}
	ready := make(chan error, 1)
	go func() {
		// pasta writes its PID, slirp4netns "1", once the namespace is
		// set up; either closes the pipe if it fails first.
		n, err := readyR.Read(make([]byte, 64))
		if n > 0 {
			err = nil
		}
		ready <- err
	}()
	timer := time.NewTimer(netStartTimeout)
	defer timer.Stop()
	select {
	case err = <-ready:
	case <-ctx.Done():
		err = ctx.Err()
	case <-timer.C:
		err = errors.New("timed out")
	}
	if err != nil {
		h.stop()
		msg := strings.TrimSpace(h.stderr.String())
		return nil, fmt.Errorf("%s did not set the network up: %v: %s", filepath.Base(s.net), err, msg)
	}
	return h, nil
}

// waitNamespaces waits until the loopback of pid's network namespace is
// up with its address (its local routes list 127.0.0.1) and, with mapped,
// until pid's user namespace maps a user and a group. bwrap's child writes
// the maps of its user namespace before it makes the nested one that
// the command runs in (to map the build's user back): once pid's maps are
// written, those of the namespace that owns the network are too.
func waitNamespaces(ctx context.Context, pid int, mapped bool) error {
	deadline := time.Now().Add(netStartTimeout)
	for {
		ready, err := namespacesReady(pid, mapped)
		if err != nil {
			return fmt.Errorf("waiting for the sandbox's namespaces: %w", err)
		}
		if ready {
			return nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return errors.New("waiting for the sandbox's namespaces: timed out")
		}
		time.Sleep(time.Millisecond)
	}
}

// namespacesReady is one look of waitNamespaces.
func namespacesReady(pid int, mapped bool) (bool, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/fib_trie", pid))
	if err != nil || !bytes.Contains(b, []byte("127.0.0.1")) {
		return false, err
	}
	if !mapped {
		return true, nil
	}
	for _, name := range []string{"uid_map", "gid_map"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, name))
		if err != nil || len(bytes.TrimSpace(b)) == 0 {
			return false, err
		}
	}
	return true, nil
}

// env returns the environment of a sandboxed command, from commandEnv,
// the one it would have unsandboxed: only sandboxKeep (and LC_*), the
// variables of Config.Env, DEPLOY_*, and HOME, the sandbox's home; as
// root, also git's safe.directory=* through GIT_CONFIG_COUNT, unless Env
// sets GIT_CONFIG_COUNT. bwrap
// passes its own environment on, so no value is on a command line.
func (s *sandbox) env(cfg Config, commandEnv []string) []string {
	keep := map[string]bool{"DEPLOY_URL": true, "DEPLOY_COMMIT": true, "DEPLOY_BRANCH": true, "DEPLOY_REPO": true, "DEPLOY_RELEASE": true}
	for _, k := range sandboxKeep {
		keep[k] = true
	}
	for _, kv := range cfg.Env {
		k, _, _ := strings.Cut(kv, "=")
		keep[k] = true
	}
	var env []string
	hasPath := false
	for _, kv := range commandEnv {
		k, _, _ := strings.Cut(kv, "=")
		if keep[k] || strings.HasPrefix(k, "LC_") {
			env = append(env, kv)
			hasPath = hasPath || k == "PATH"
		}
	}
	if !hasPath {
		env = append(env, "PATH="+defaultPath)
	}
	if s.drop != nil && !keep["GIT_CONFIG_COUNT"] {
		// The release is the build's user's, the cache repository root's:
		// git would call the worktree's ownership dubious. Everything the
		// build sees is meant for it.
		env = append(env, "GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=safe.directory", "GIT_CONFIG_VALUE_0=*")
	}
	return append(env, "HOME="+s.home)
}

// within reports whether p is dir or inside it, both clean and absolute.
func within(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// withinAny reports whether p is one of dirs or inside one.
func withinAny(dirs []string, p string) bool {
	for _, d := range dirs {
		if within(d, p) {
			return true
		}
	}
	return false
}

// containsAny reports whether one of paths is inside dir.
func containsAny(dir string, paths []string) bool {
	for _, p := range paths {
		if within(dir, p) {
			return true
		}
	}
	return false
}
