package deployer

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// MissingPrograms returns the programs of c's commands that cannot be found
// where the commands will look for them, and that PATH: Env's PATH if it
// sets one, else Caddy's. A program named by a relative path (./build.sh)
// is looked for in the release, which does not exist yet, and so is never
// reported; nor is a program whose PATH holds a relative folder. Looking a
// program up is a few stats: callers may do it when a configuration loads,
// so that a build tool that is not installed is told then rather than at
// the first deploy.
func (c Config) MissingPrograms() (missing []string, path string) {
	path = os.Getenv("PATH")
	for _, kv := range c.Env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, argv := range c.Commands {
		if len(argv) == 0 {
			continue
		}
		prog := argv[0]
		if !filepath.IsAbs(prog) && strings.ContainsAny(prog, `/\`) || slices.Contains(missing, prog) {
			continue
		}
		if !findProgram(prog, path) {
			missing = append(missing, prog)
		}
	}
	return missing, path
}

// findProgram reports whether prog is an executable file: prog itself when
// it is an absolute path, else in a folder of the PATH value path.
func findProgram(prog, path string) bool {
	if filepath.IsAbs(prog) {
		_, err := exec.LookPath(prog)
		return err == nil
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" || !filepath.IsAbs(dir) {
			return true // relative to the release, which may hold it
		}
		if _, err := exec.LookPath(filepath.Join(dir, prog)); err == nil {
			return true
		}
	}
	return false
}
