//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd)

package testkit

// lockFile takes no lock where flock(2) is missing: two processes that miss
// a binary at once then both build it, and the last rename wins.
func lockFile(string) (unlock func(), err error) { return func() {}, nil }
