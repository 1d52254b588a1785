package caddywebhook

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// referencePage is the user's reference of every setting. Each setting has
// one source, the doc comment of its field in Handler; the page's table is
// written for people and checked against the fields here, so that neither
// can gain or lose a setting without the other.
const referencePage = "../docs/caddyfile.md"

// referenceRow is one row of the page's subdirective table.
type referenceRow struct {
	line         int
	subdirective string   // first word of the first column
	fields       []string // JSON names in the second column
}

var (
	backticked = regexp.MustCompile("`([^`]*)`")
	jsonName   = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
)

// referenceRows reads the subdirective table of the reference page.
func referenceRows(t *testing.T) []referenceRow {
	t.Helper()
	page, err := os.ReadFile(referencePage)
	if err != nil {
		t.Fatal(err)
	}
	var rows []referenceRow
	in := false
	for i, line := range strings.Split(string(page), "\n") {
		switch {
		case strings.HasPrefix(line, "| subdirective | JSON field |"):
			in = true
			continue
		case in && !strings.HasPrefix(line, "|"):
			in = false
		}
		if !in || strings.HasPrefix(line, "| ---") {
			continue
		}
		cols := strings.Split(line, " | ")
		if len(cols) < 3 {
			t.Fatalf("%s:%d: a row of fewer than four columns", referencePage, i+1)
		}
		row := referenceRow{line: i + 1}
		if m := backticked.FindStringSubmatch(cols[0]); m != nil {
			row.subdirective = strings.Fields(m[1])[0]
		}
		for _, m := range backticked.FindAllStringSubmatch(cols[1], -1) {
			if jsonName.MatchString(m[1]) {
				row.fields = append(row.fields, m[1])
			}
		}
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		t.Fatalf("%s: no subdirective table found", referencePage)
	}
	return rows
}

// TestReferenceMatchesFields checks the reference page against Handler:
// every JSON field has a row and a doc comment, every row names fields that
// exist, and every subdirective of the table is one the Caddyfile parser
// knows.
func TestReferenceMatchesFields(t *testing.T) {
	rows := referenceRows(t)

	documented := map[string]int{}
	for _, r := range rows {
		for _, f := range r.fields {
			documented[f] = r.line
		}
	}
	var fields []string
	ht := reflect.TypeOf(Handler{})
	for i := range ht.NumField() {
		f := ht.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		fields = append(fields, name)
		if _, ok := documented[name]; !ok {
			t.Errorf("JSON field %q (Handler.%s) has no row in %s", name, f.Name, referencePage)
		}
	}
	for name, line := range documented {
		if !slices.Contains(fields, name) {
			t.Errorf("%s:%d names JSON field %q, which Handler does not have", referencePage, line, name)
		}
	}

	// The field's doc comment is the source the page is written from.
	file, err := parser.ParseFile(token.NewFileSet(), "handler.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	ast.Inspect(file, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok || ts.Name.Name != "Handler" {
			return true
		}
		for _, f := range ts.Type.(*ast.StructType).Fields.List {
			if len(f.Names) == 0 || !f.Names[0].IsExported() {
				continue
			}
			if f.Doc == nil || strings.TrimSpace(f.Doc.Text()) == "" {
				t.Errorf("Handler.%s has no doc comment: it is the user's JSON documentation", f.Names[0].Name)
			}
		}
		return false
	})

	for _, r := range rows {
		if r.subdirective == "" {
			t.Errorf("%s:%d: no subdirective in the first column", referencePage, r.line)
			continue
		}
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("github_webhook {\n" + r.subdirective + "\n}"))
		if err != nil && strings.Contains(err.Error(), "unrecognized subdirective") {
			t.Errorf("%s:%d: subdirective %q is not one the Caddyfile parser knows: %v", referencePage, r.line, r.subdirective, err)
		}
	}
}
