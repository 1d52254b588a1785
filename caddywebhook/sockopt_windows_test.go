package caddywebhook

import "syscall"

// reuseAddr sets SO_REUSEADDR on the socket fd.
func reuseAddr(fd uintptr) error {
	return syscall.SetsockoptInt(syscall.Handle(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
}
