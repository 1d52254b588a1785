package deployer

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

// useParentDeathSignal says that commands are bound to Caddy by Linux's
// parent-death signal rather than by a watcher. Tests turn it off to run
// the watcher, the way of the other Unix systems.
var useParentDeathSignal = true

// setParentDeathSignal makes the kernel kill the process started with a
// when Caddy dies, even by kill -9.
func setParentDeathSignal(a *syscall.SysProcAttr) {
	a.Pdeathsig = syscall.SIGKILL
}

// killLeftoverGroup ends the processes of group pgid that a previous Caddy
// left behind, but only those whose environment names release: after a
// reboot the number may belong to somebody else.
func killLeftoverGroup(pgid int, release string) (killed int) {
	if pgid <= 1 {
		return 0
	}
	marker := []byte("DEPLOY_RELEASE=" + release + "\x00")
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	for _, e := range entries {
		pid := 0
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid <= 1 {
			continue
		}
		if pg, err := syscall.Getpgid(pid); err != nil || pg != pgid {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !strings.Contains(string(env)+"\x00", string(marker)) {
			continue
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed++
		}
	}
	return killed
}
