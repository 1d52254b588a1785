package deployer

import "os"

// lockPath fails on Windows, where Config.Validate refuses every
// configuration before a deployer could start: see ErrUnsupportedPlatform.
func lockPath(path string) (*os.File, error) {
	return nil, ErrUnsupportedPlatform
}
