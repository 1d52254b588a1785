package githubapi

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/caddy-webhooks/caddy-github-webhook"

func goList(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, ee.Stderr)
		}
		t.Fatalf("go list %s: %v", strings.Join(args, " "), err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// TestBoundaries: githubapi depends on no Caddy package and on no other
// package of this module; no package's non-test code imports githubtest.
func TestBoundaries(t *testing.T) {
	deps := goList(t, "-deps", "-f", "{{.ImportPath}}", module+"/githubapi")
	if len(deps) < 10 {
		t.Fatalf("go list found only %v", deps)
	}
	for _, pkg := range deps {
		if strings.HasPrefix(pkg, "github.com/caddyserver/") || (strings.HasPrefix(pkg, module+"/") && pkg != module+"/githubapi") {
			t.Errorf("githubapi depends on %s", pkg)
		}
	}
	for _, line := range goList(t, "-f", "{{.ImportPath}}|{{join .Imports \",\"}}", module+"/...") {
		pkg, imports, _ := strings.Cut(line, "|")
		for _, imp := range strings.Split(imports, ",") {
			if imp == module+"/internal/githubtest" {
				t.Errorf("%s imports githubtest outside its tests", pkg)
			}
		}
	}
}
