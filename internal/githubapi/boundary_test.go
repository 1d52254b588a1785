package githubapi

import (
	"strings"
	"testing"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// TestBoundaries: githubapi depends on no Caddy package and on no other
// package of this module but apiretry (the retry rules it shares with the
// other forges' clients); no package's non-test code imports githubtest,
// but forgetest, the other forges' stand-ins, which reuse its validator.
func TestBoundaries(t *testing.T) {
	deps := testkit.GoList(t, "-deps", "-f", "{{.ImportPath}}", testkit.Module+"/internal/githubapi")
	if len(deps) < 10 {
		t.Fatalf("go list found only %v", deps)
	}
	for _, pkg := range deps {
		if strings.HasPrefix(pkg, "github.com/caddyserver/") || (strings.HasPrefix(pkg, testkit.Module+"/") && pkg != testkit.Module+"/internal/githubapi" && pkg != testkit.Module+"/internal/apiretry") {
			t.Errorf("githubapi depends on %s", pkg)
		}
	}
	for _, line := range testkit.GoList(t, "-f", "{{.ImportPath}}|{{join .Imports \",\"}}", testkit.Module+"/...") {
		pkg, imports, _ := strings.Cut(line, "|")
		for _, imp := range strings.Split(imports, ",") {
			if imp == testkit.Module+"/internal/githubtest" && pkg != testkit.Module+"/internal/forgetest" {
				t.Errorf("%s imports githubtest outside its tests", pkg)
			}
		}
	}
}
