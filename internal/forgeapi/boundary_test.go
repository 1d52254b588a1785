package forgeapi

import (
	"strings"
	"testing"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// TestBoundaries: forgeapi depends on no Caddy package and, of this module,
// only on apiretry and githubapi (the rules of checks); no package's
// non-test code imports forgetest.
func TestBoundaries(t *testing.T) {
	allowed := map[string]bool{
		testkit.Module + "/internal/forgeapi":  true,
		testkit.Module + "/internal/apiretry":  true,
		testkit.Module + "/internal/githubapi": true,
	}
	for _, pkg := range testkit.GoList(t, "-deps", "-f", "{{.ImportPath}}", testkit.Module+"/internal/forgeapi") {
		if strings.HasPrefix(pkg, "github.com/caddyserver/") || (strings.HasPrefix(pkg, testkit.Module+"/") && !allowed[pkg]) {
			t.Errorf("forgeapi depends on %s", pkg)
		}
	}
	for _, line := range testkit.GoList(t, "-f", "{{.ImportPath}}|{{join .Imports \",\"}}", testkit.Module+"/...") {
		pkg, imports, _ := strings.Cut(line, "|")
		for _, imp := range strings.Split(imports, ",") {
			if imp == testkit.Module+"/internal/forgetest" {
				t.Errorf("%s imports forgetest outside its tests", pkg)
			}
		}
	}
}
