//go:build unix && !linux

package deployer

import "syscall"

// useParentDeathSignal is false: outside Linux, a watcher binds commands
// to Caddy (see watcherScript). FreeBSD has a parent-death signal too, but
// it reaches only the group's leader, and without /proc the next start
// could not tell the rest of a leftover group from somebody else's; the
// watcher kills the whole group at once.
const useParentDeathSignal = false

func setParentDeathSignal(*syscall.SysProcAttr) {}

// killLeftoverGroup kills nothing outside Linux: without /proc there is no
// cheap way to check that the processes of group pgid still belong to the
// build of release (after a reboot the number may be somebody else's). The
// watcher killed that group already when the previous Caddy died; only a
// process that left the group, or a Caddy that died in the instant between
// starting a command and handing it to its watcher, is not ended.
func killLeftoverGroup(pgid int, release string) int { return 0 }
