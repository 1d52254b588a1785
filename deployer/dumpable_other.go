//go:build !linux

package deployer

// makeNonDumpable does nothing outside Linux, whose /proc it guards against.
func makeNonDumpable() error { return nil }
