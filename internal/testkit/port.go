package testkit

import (
	"fmt"
	"net"
)

// FreePorts returns n distinct TCP ports on 127.0.0.1 that the kernel picked
// as free. Each was listened on and closed again: another process could take
// it before the caller listens, which the kernel makes unlikely (it hands out
// ephemeral ports in turn, not the one just closed) but not impossible, so a
// caller that starts a server on one checks that the server answering is its
// own.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("picking a free port: %w", err)
		}
		// Closed only once all are picked, so that they are distinct.
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Ports is FreePorts for tests: it fails tb instead of returning an error.
func Ports(tb TB, n int) []int {
	tb.Helper()
	ports, err := FreePorts(n)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	return ports
}
