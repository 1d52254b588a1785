package testkit

import (
	"errors"
	"os/exec"
	"strings"
)

// GoList runs "go list" with args in the working directory (in a test, its
// package's folder) and returns the lines it printed, failing tb with go
// list's error output if it fails. Boundary tests read a package's imports
// with it.
func GoList(tb TB, args ...string) []string {
	tb.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			tb.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, ee.Stderr)
		}
		tb.Fatalf("go list %s: %v", strings.Join(args, " "), err)
		return nil
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}
