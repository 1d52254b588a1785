package deployer

import "syscall"

// ownGroupAttr is nil on Windows, where the deployer's tests only compile:
// Config.Validate refuses every configuration there.
func ownGroupAttr() *syscall.SysProcAttr { return nil }
