//go:build !unix

package testkit

import "syscall"

// procAttr returns attr: neither a parent-death signal nor process groups
// exist here.
func procAttr(attr *syscall.SysProcAttr, ownGroup bool) *syscall.SysProcAttr { return attr }
