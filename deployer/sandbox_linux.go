package deployer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// What the sandbox needs from the host when Caddy does not run as root.
// bwrap, not setuid (as Debian ships it), makes its namespaces inside a
// user namespace of its own, which only an unprivileged user namespace
// allows; the network helper, entering that user namespace, opens
// /dev/net/tun, which the namespace's capabilities do not open for it:
// only the device file's mode does.

// userNamespacesError reports why this host does not let an ordinary user
// make a user namespace, or nil when it does (as far as its settings say).
func userNamespacesError() error {
	if v, ok := readSysctl("user/max_user_namespaces"); ok && v == "0" {
		return errors.New("sandbox: this host allows no user namespaces (sysctl user.max_user_namespaces = 0), which bwrap needs when Caddy does not run as root: allow them (sysctl -w user.max_user_namespaces=15000, and in /etc/sysctl.d to keep it)")
	}
	// Debian before 11 and some kernels: a switch of their own.
	if v, ok := readSysctl("kernel/unprivileged_userns_clone"); ok && v == "0" {
		return errors.New("sandbox: this host allows no unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone = 0), which bwrap needs when Caddy does not run as root: allow them (sysctl -w kernel.unprivileged_userns_clone=1, and in /etc/sysctl.d to keep it)")
	}
	return nil
}

// userNamespacesHint explains a bwrap that could not start as an ordinary
// user, from its message and the host's settings; "" when nothing does.
func userNamespacesHint(msg string) string {
	if v, ok := readSysctl("kernel/apparmor_restrict_unprivileged_userns"); ok && v == "1" {
		return "AppArmor restricts unprivileged user namespaces on this host (sysctl kernel.apparmor_restrict_unprivileged_userns = 1), which bwrap needs when Caddy does not run as root: give bwrap an AppArmor profile that allows userns (Ubuntu's bwrap-userns-restrict), or set the sysctl to 0"
	}
	if strings.Contains(msg, "namespace") || strings.Contains(msg, "uid map") {
		return "bwrap could not make its user namespace, which it needs when Caddy does not run as root: check that this host allows unprivileged user namespaces (sysctl user.max_user_namespaces, kernel.unprivileged_userns_clone), also inside a container"
	}
	return ""
}

// readSysctl returns the value of /proc/sys/<name>, and whether it exists.
func readSysctl(name string) (string, bool) {
	b, err := os.ReadFile("/proc/sys/" + name)
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(b)), true
}

// tunDevice is the device that pasta and slirp4netns open.
const tunDevice = "/dev/net/tun"

// tunError reports why Caddy's user cannot open /dev/net/tun, which the
// network helper opens as that user, or nil when it can. Opening it makes
// no interface: that takes an ioctl.
func tunError() error {
	f, err := os.OpenFile(tunDevice, os.O_RDWR, 0)
	if err == nil {
		f.Close()
		return nil
	}
	none := " or give builds no network (sandbox { network none })"
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return errors.New("sandbox: " + tunDevice + " does not exist, and the builds' network helper (slirp4netns or pasta) needs it: load the tun module (modprobe tun), or, in a container, pass the device in (docker run --device /dev/net/tun)," + none)
	case errors.Is(err, fs.ErrPermission):
		mode := ""
		if fi, err := os.Stat(tunDevice); err == nil {
			mode = fmt.Sprintf(" (mode %04o, owner %d)", fi.Mode().Perm(), owner(tunDevice))
		}
		return errors.New("sandbox: Caddy's user cannot open " + tunDevice + mode + ", and the builds' network helper (slirp4netns or pasta) needs it when Caddy does not run as root: give it mode 0666 as Debian's udev rule does (chmod 0666 " + tunDevice + ", at every boot: KERNEL==\"tun\", MODE=\"0666\" in /etc/udev/rules.d)," + none)
	}
	return fmt.Errorf("sandbox: opening %s, which the builds' network helper needs: %w", tunDevice, err)
}

// namespaceOwner returns the user namespace that owns the network
// namespace ns. When it is this process's own, an ordinary user cannot
// enter the network namespace: a setuid bwrap made it.
func namespaceOwner(ns *os.File) (*os.File, error) {
	fd, err := unix.IoctlRetInt(int(ns.Fd()), unix.NS_GET_USERNS)
	if err != nil {
		return nil, fmt.Errorf("finding the user namespace of the sandbox's network: %w", err)
	}
	owner := os.NewFile(uintptr(fd), "userns")
	var st, self unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		owner.Close()
		return nil, err
	}
	if err := unix.Stat("/proc/self/ns/user", &self); err == nil && st.Ino == self.Ino && st.Dev == self.Dev {
		owner.Close()
		return nil, errors.New("the sandbox's network namespace belongs to the host's user namespace (is bwrap setuid root?), which the network helper cannot enter when Caddy does not run as root: use a bwrap that is not setuid (chmod u-s), or give builds no network (sandbox { network none })")
	}
	return owner, nil
}

// bwrapSetuid reports whether bwrap is a setuid-root file.
func bwrapSetuid(bwrap string) bool {
	fi, err := os.Stat(bwrap)
	return err == nil && fi.Mode()&fs.ModeSetuid != 0 && owner(bwrap) == 0
}

// fdPath names descriptor n of the process that reads it.
func fdPath(n int) string { return "/proc/self/fd/" + strconv.Itoa(n) }
