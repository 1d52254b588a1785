package deployer

import (
	"errors"
	"fmt"
)

// ErrUnsupportedPlatform is what Config.Validate returns on Windows, where
// nothing yet ends a build's whole process tree with the deploy or with
// Caddy, nor switches current atomically.
var ErrUnsupportedPlatform = errors.New("deploys are not supported on Windows yet")

// platformError reports why c cannot be deployed from on goos (a
// runtime.GOOS value), or nil when it can.
func platformError(goos string, c Config) error {
	switch {
	case goos == "windows":
		return ErrUnsupportedPlatform
	case c.Sandbox && goos != "linux":
		return fmt.Errorf("sandbox needs Linux (bubblewrap, namespaces); it is not available on %s", goos)
	}
	return nil
}
