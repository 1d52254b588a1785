package caddywebhook

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// TestDeployerKnowsNoHTTP: package deployer depends on no Caddy package at
// all, and neither it nor any package of this module it uses imports
// net/http. (Its dependency zap imports net/http for a handler of its own,
// so the second check is on this module's packages only.)
func TestDeployerKnowsNoHTTP(t *testing.T) {
	deps := testkit.GoList(t, "-deps", "-f", "{{.ImportPath}}|{{join .Imports \",\"}}", testkit.Module+"/deployer")
	seen := false
	for _, line := range deps {
		pkg, imports, _ := strings.Cut(line, "|")
		if strings.HasPrefix(pkg, "github.com/caddyserver/") {
			t.Errorf("deployer depends on %s", pkg)
		}
		if !strings.HasPrefix(pkg, testkit.Module+"/") {
			continue
		}
		seen = seen || pkg == testkit.Module+"/deployer"
		for _, imp := range strings.Split(imports, ",") {
			if imp == "net/http" || strings.HasPrefix(imp, "net/http/") || strings.HasPrefix(imp, "github.com/google/go-github") {
				t.Errorf("%s imports %s", pkg, imp)
			}
		}
	}
	if !seen {
		t.Fatalf("go list did not list the deployer: %v", deps)
	}
}

// TestDeliveryKnowsNoCaddy: package delivery depends on the standard
// library alone: no Caddy, no deployer or other package of this module, no
// git library; and nothing it depends on starts a process (os/exec).
func TestDeliveryKnowsNoCaddy(t *testing.T) {
	deps := testkit.GoList(t, "-deps", "-f", "{{.ImportPath}}|{{.Standard}}", testkit.Module+"/delivery")
	seen := false
	for _, line := range deps {
		pkg, std, _ := strings.Cut(line, "|")
		if pkg == testkit.Module+"/delivery" {
			seen = true
			continue
		}
		if std != "true" || pkg == "os/exec" {
			t.Errorf("delivery depends on %s", pkg)
		}
	}
	if !seen {
		t.Fatalf("go list did not list delivery: %v", deps)
	}
}

// TestHandlerRunsNothing: package caddywebhook starts no process, git or
// other; that is the deployer's job.
func TestHandlerRunsNothing(t *testing.T) {
	imports := testkit.GoList(t, "-f", "{{join .Imports \"\\n\"}}", ".")
	if len(imports) < 3 {
		t.Fatalf("go list found only %v", imports)
	}
	for _, imp := range imports {
		if imp == "os/exec" {
			t.Errorf("caddywebhook imports %s", imp)
		}
	}

	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.SelectorExpr:
				if x, ok := n.X.(*ast.Ident); ok {
					switch x.Name + "." + n.Sel.Name {
					case "os.StartProcess", "syscall.Exec", "syscall.ForkExec", "syscall.StartProcess", "unix.Exec":
						t.Errorf("%s: calls %s.%s", fset.Position(n.Pos()), x.Name, n.Sel.Name)
					}
				}
			case *ast.BasicLit:
				if s, err := strconv.Unquote(n.Value); err == nil && n.Kind == token.STRING && s == "git" {
					t.Errorf("%s: names git", fset.Position(n.Pos()))
				}
			}
			return true
		})
	}
	if checked < 4 {
		t.Fatalf("checked only %d files", checked)
	}
}
