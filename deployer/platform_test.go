package deployer

import (
	"errors"
	"runtime"
	"strings"
	"testing"
)

// A configuration that cannot be kept on a platform is refused when Caddy
// provisions it (Validate), never half-run: on Windows every one, with the
// message the user sees in Caddy's error; a sandbox outside Linux.
func TestPlatformError(t *testing.T) {
	for _, tc := range []struct {
		goos    string
		sandbox bool
		want    string // "" means accepted
	}{
		{goos: "linux"},
		{goos: "linux", sandbox: true},
		{goos: "darwin"},
		{goos: "freebsd"},
		{goos: "openbsd"},
		{goos: "netbsd"},
		{goos: "darwin", sandbox: true, want: "sandbox needs Linux (bubblewrap, namespaces); it is not available on darwin"},
		{goos: "openbsd", sandbox: true, want: "sandbox needs Linux (bubblewrap, namespaces); it is not available on openbsd"},
		{goos: "windows", want: "deploys are not supported on Windows yet"},
		{goos: "windows", sandbox: true, want: "deploys are not supported on Windows yet"},
	} {
		name := tc.goos
		if tc.sandbox {
			name += "/sandbox"
		}
		t.Run(name, func(t *testing.T) {
			err := platformError(tc.goos, Config{Sandbox: tc.sandbox})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Fatalf("error = %v, want %q", err, tc.want)
			case tc.goos == "windows" && !errors.Is(err, ErrUnsupportedPlatform):
				t.Fatalf("error %v is not ErrUnsupportedPlatform", err)
			}
		})
	}
}

// Validate applies the platform's rule: here, on the platform the tests
// run on.
func TestValidateRefusesWhatThePlatformCannotKeep(t *testing.T) {
	cfg := Config{Path: "/srv/site", Remote: "https://github.com/o/r.git", Sandbox: true}
	err := cfg.Validate()
	switch runtime.GOOS {
	case "linux":
		if err != nil {
			t.Fatalf("Validate: %v", err)
		}
	case "windows":
		if !errors.Is(err, ErrUnsupportedPlatform) {
			t.Fatalf("Validate = %v, want ErrUnsupportedPlatform", err)
		}
	default:
		if err == nil || !strings.Contains(err.Error(), "sandbox needs Linux") {
			t.Fatalf("Validate = %v, want the sandbox refused", err)
		}
	}
}
