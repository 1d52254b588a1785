package notify

import (
	"strings"
	"testing"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// TestBoundaries: notify depends on the standard library and the Standard
// Webhooks library alone: no Caddy, no package of this module (so neither
// git nor the deployer).
func TestBoundaries(t *testing.T) {
	deps := testkit.GoList(t, "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", testkit.Module+"/internal/notify")
	if !strings.Contains(strings.Join(deps, " "), "standard-webhooks") {
		t.Fatalf("go list found %v, without the Standard Webhooks library", deps)
	}
	for _, pkg := range deps {
		switch {
		case pkg == "", pkg == testkit.Module+"/internal/notify",
			strings.HasPrefix(pkg, "github.com/standard-webhooks/standard-webhooks/libraries/"):
		default:
			t.Errorf("notify depends on %s", pkg)
		}
	}
}
