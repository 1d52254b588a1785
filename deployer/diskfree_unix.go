//go:build linux || darwin || freebsd

package deployer

import "golang.org/x/sys/unix"

// freeSpace returns the bytes that an unprivileged process may still write
// on the file system of dir, or -1 when statfs(2) cannot tell.
func freeSpace(dir string) int64 {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return -1
	}
	free := uint64(st.Bavail) * uint64(st.Bsize)
	if free > 1<<62 {
		return 1 << 62
	}
	return int64(free)
}
