//go:build linux

package deployer

import "golang.org/x/sys/unix"

// makeNonDumpable marks the whole process non-dumpable: /proc/<pid>/environ,
// mem, maps and the like become root's, and ptrace by the same user fails.
// Build commands run as the same user and could otherwise read the
// process's environment (where the webhook secret and the token often come
// from) and memory. It does not stop root, whose capabilities read any
// process. Commands get a dumpable process again: execve resets the flag.
func makeNonDumpable() error {
	return unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
}
