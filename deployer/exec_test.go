package deployer

import (
	"context"
	"os/exec"
	"strings"
	"testing"
)

// A long-lived git process (as git cat-file --batch) that fails gives an
// error naming the command, with git's own message, and the token scrubbed
// from it.
func TestStartedGitErrorIsScrubbed(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	mustGit(t, dir, "init", "--quiet", "--bare", dir)
	const token = "ghs_0123456789abcdefSECRET"
	g := &git{cacheDir: dir, token: token}
	p, err := g.start(context.Background(), dir, strings.NewReader(""), "cat-file", "-e", token)
	if err != nil {
		t.Fatal(err)
	}
	err = p.Wait()
	if err == nil {
		t.Fatal("git cat-file -e of no object succeeded")
	}
	msg := err.Error()
	if strings.Contains(msg, token) {
		t.Errorf("the token is in the error: %s", msg)
	}
	for _, want := range []string{"git cat-file: ", "exit status", "[token]"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
}
