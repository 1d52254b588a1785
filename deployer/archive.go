package deployer

// archiveExt ends the storage key of a release's archive: a tar stream
// compressed with zstd.
const archiveExt = ".tar.zst"
