package deployer

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestMissingPrograms: the programs a configuration's commands name are
// looked up on the PATH the commands will get, when it loads.
func TestMissingPrograms(t *testing.T) {
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "sitegen"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "notes.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	sh := "/bin/sh"
	for _, tc := range []struct {
		name     string
		cfg      Config
		missing  []string
		wantPath string // "" for Caddy's own
	}{
		{"all found", Config{Commands: [][]string{{"sh", "-c", "true"}, {sh}}}, nil, ""},
		{"not installed, reported once", Config{Commands: [][]string{{"no-such-builder-xyz"}, {"sh"}, {"no-such-builder-xyz", "again"}}},
			[]string{"no-such-builder-xyz"}, ""},
		{"in the release: not looked for", Config{Commands: [][]string{{"./build.sh"}, {"scripts/build"}}}, nil, ""},
		{"absolute path missing", Config{Commands: [][]string{{"/no/such/hugo"}}}, []string{"/no/such/hugo"}, ""},
		{"env sets PATH", Config{Env: []string{"PATH=" + bin}, Commands: [][]string{{"sitegen"}, {"sh"}, {"notes.txt"}}},
			[]string{"sh", "notes.txt"}, bin},
		{"relative folder in PATH", Config{Env: []string{"PATH=node_modules/.bin:" + bin}, Commands: [][]string{{"eleventy"}}}, nil, "node_modules/.bin:" + bin},
	} {
		t.Run(tc.name, func(t *testing.T) {
			missing, path := tc.cfg.MissingPrograms()
			if !slices.Equal(missing, tc.missing) {
				t.Errorf("missing = %q, want %q", missing, tc.missing)
			}
			want := tc.wantPath
			if want == "" {
				want = os.Getenv("PATH")
			}
			if path != want {
				t.Errorf("PATH = %q, want %q", path, want)
			}
		})
	}
}
