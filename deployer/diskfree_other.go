//go:build !(linux || darwin || freebsd)

package deployer

// freeSpace returns -1: without statfs(2), what a file system has free is
// not checked before an archive is unpacked (maxUnpacked and the live
// record's size still bound it).
func freeSpace(dir string) int64 { return -1 }
