//go:build !linux

package deployer

import (
	"errors"
	"os"
	"strconv"
)

// The sandbox needs Linux: platformError refuses it elsewhere before any of
// these is called.

func userNamespacesError() error           { return nil }
func userNamespacesHint(msg string) string { return "" }
func tunError() error                      { return nil }
func bwrapSetuid(bwrap string) bool        { return false }
func fdPath(n int) string                  { return "/dev/fd/" + strconv.Itoa(n) }

func namespaceOwner(ns *os.File) (*os.File, error) {
	return nil, errors.New("sandbox: user namespaces need Linux")
}
