package deployer

import (
	"os"
	"os/exec"
	"syscall"
)

// group is the process group of a command; Windows has none that this
// package uses yet.
type group struct{ pgid int }

// startGroup fails on Windows, where Config.Validate refuses every
// configuration before a command could start: see ErrUnsupportedPlatform.
func startGroup(cmd *exec.Cmd) (*group, error) { return nil, ErrUnsupportedPlatform }

func (g *group) end() {}

// killLeftoverGroup kills nothing on Windows: no deploy ever ran there.
func killLeftoverGroup(pgid int, release string) int { return 0 }

// socketPair fails on Windows, as startGroup does.
func socketPair() (ours, theirs *os.File, err error) { return nil, nil, ErrUnsupportedPlatform }

// owner is -1 on Windows, which has no user ids.
func owner(string) int { return -1 }

// helperAttr returns no attributes on Windows, where no helper runs.
func helperAttr() *syscall.SysProcAttr { return nil }
