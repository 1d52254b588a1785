package testkit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// buildMu makes the builds of one process one after another, so that a
// binary is built once however many tests ask for it.
var buildMu sync.Mutex

// binPrefix starts the name of every folder Binary keeps binaries in.
const binPrefix = "caddy-github-webhook-bin-"

// Binary returns the paths of binaries of this module's main packages pkgs
// ("./cmd/caddy", "./cmd/demo"), built with "go build" as the README says:
// no -race, no -trimpath. A binary is built once for a given source: it is
// kept in a folder of os.TempDir() named after a hash of the module's
// sources (go.mod, go.sum, and the Go and embedded files of its packages,
// tests left out) and of the Go toolchain's settings, so that the tests of
// one run, a second run of the same sources at the same time, and the bench
// that follows share it. Builds of the same sources take turns (a file lock),
// so a process that waited finds the binaries built; each appears in the
// folder in one rename, whole. Folders that no run used for a day are
// removed.
func Binary(ctx context.Context, pkgs ...string) ([]string, error) {
	return Build(ctx, nil, pkgs...)
}

// Build is Binary that calls compiling, when not nil, with the packages it
// is about to compile, just before it compiles them; it does not call it
// when every binary was built already. The demo says then that it is
// compiling Caddy, which takes minutes the first time.
func Build(ctx context.Context, compiling func(pkgs []string), pkgs ...string) ([]string, error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	root, err := Root()
	if err != nil {
		return nil, err
	}
	key, err := sourceKey(ctx, root)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(os.TempDir(), binPrefix+key)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("making the binaries' folder: %w", err)
	}
	now := time.Now()
	os.Chtimes(dir, now, now) // in use: not for removeStale
	removeStale(dir)
	// One build at a time for these sources, across processes: a second
	// run, or another package's tests, waits and finds the binaries built.
	unlock, err := lockFile(filepath.Join(dir, ".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()

	paths := make([]string, len(pkgs))
	var missing []string
	for i, pkg := range pkgs {
		paths[i] = filepath.Join(dir, filepath.Base(pkg))
		if _, err := os.Stat(paths[i]); err != nil {
			missing = append(missing, pkg)
		}
	}
	if len(missing) == 0 {
		return paths, nil
	}
	tmp, err := os.MkdirTemp(dir, ".build-")
	if err != nil {
		return nil, fmt.Errorf("making the build folder: %w", err)
	}
	defer os.RemoveAll(tmp)
	if compiling != nil {
		compiling(missing)
	}
	cmd := exec.CommandContext(ctx, "go", append([]string{"build", "-o", tmp + string(filepath.Separator)}, missing...)...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build %s: %w\n%s", strings.Join(missing, " "), err, out)
	}
	for _, pkg := range missing {
		name := filepath.Base(pkg)
		if err := os.Rename(filepath.Join(tmp, name), filepath.Join(dir, name)); err != nil {
			return nil, fmt.Errorf("keeping the binary %s: %w", name, err)
		}
	}
	return paths, nil
}

// sourceKey hashes what a build of a main package of the module in root
// depends on: the toolchain's settings, go.mod and go.sum, and the files that
// the module's packages (tests left out) compile or embed.
func sourceKey(ctx context.Context, root string) (string, error) {
	h := sha256.New()
	goEnv := exec.CommandContext(ctx, "go", "env", "GOVERSION", "GOOS", "GOARCH", "CGO_ENABLED", "GOFLAGS", "GOEXPERIMENT", "GOAMD64", "GOARM64")
	goEnv.Dir = root
	out, err := goEnv.Output()
	if err != nil {
		return "", fmt.Errorf("go env: %w", err)
	}
	h.Write(out)
	const format = `{{if .Module}}{{if eq .Module.Path "` + Module + `"}}{{.Dir}}{{range .GoFiles}}|{{.}}{{end}}{{range .CgoFiles}}|{{.}}{{end}}{{range .EmbedFiles}}|{{.}}{{end}}
{{end}}{{end}}`
	list := exec.CommandContext(ctx, "go", "list", "-deps", "-f", format, "./...")
	list.Dir = root
	var stderr bytes.Buffer
	list.Stderr = &stderr
	out, err = list.Output()
	if err != nil {
		return "", fmt.Errorf("go list ./...: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	files := []string{filepath.Join(root, "go.mod"), filepath.Join(root, "go.sum")}
	for line := range strings.Lines(string(out)) {
		parts := strings.Split(strings.TrimSpace(line), "|")
		if len(parts) < 2 {
			continue
		}
		for _, name := range parts[1:] {
			files = append(files, filepath.Join(parts[0], name))
		}
	}
	for _, f := range files {
		if err := hashFile(h, root, f); err != nil && !(errors.Is(err, os.ErrNotExist) && filepath.Base(f) == "go.sum") {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:20], nil
}

// hashFile writes the name of f, relative to root, and its content to h.
func hashFile(h io.Writer, root, f string) error {
	rel, err := filepath.Rel(root, f)
	if err != nil {
		return err
	}
	file, err := os.Open(f)
	if err != nil {
		return fmt.Errorf("hashing the sources: %w", err)
	}
	defer file.Close()
	fmt.Fprintf(h, "%s\x00", filepath.ToSlash(rel))
	if _, err := io.Copy(h, file); err != nil {
		return fmt.Errorf("hashing the sources: %w", err)
	}
	h.Write([]byte{0})
	return nil
}

// removeStale removes the binaries' folders beside keep that no run has used
// for a day.
func removeStale(keep string) {
	entries, err := os.ReadDir(filepath.Dir(keep))
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), binPrefix) || e.Name() == filepath.Base(keep) {
			continue
		}
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > 24*time.Hour {
			os.RemoveAll(filepath.Join(filepath.Dir(keep), e.Name()))
		}
	}
}
