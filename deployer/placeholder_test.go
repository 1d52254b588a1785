package deployer

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPlaceholderUntilFirstRelease: from the moment Start returns, before
// any git work, current points at a page that says the site is being
// deployed (on main, current did not exist until the first release: a blank
// 404). It is no release: Status shows nothing live and rollback has nothing
// to go to. The first release replaces it in one switch, and the page is
// removed; a later start, with a release live, makes none.
func TestPlaceholderUntilFirstRelease(t *testing.T) {
	r := newRemote(t)
	tip := r.commit(map[string]string{"index.html": "hello"})
	gate := filepath.Join(t.TempDir(), "go-on")
	path := filepath.Join(t.TempDir(), "site")
	cfg := Config{Path: path, Remote: r.bare, Repo: "octocat/<blog>", Timeout: time.Minute,
		Commands: [][]string{{"sh", "-c", `while [ ! -e "$GATE" ]; do sleep 0.05; done`}},
		Env:      []string{"GATE=" + gate}}
	tg := start(t, cfg)

	if link, err := os.Readlink(filepath.Join(path, "current")); err != nil || link != "placeholder" {
		t.Fatalf("current -> %q (%v), want the placeholder", link, err)
	}
	page := readCurrent(t, path, "index.html")
	for _, want := range []string{
		`<meta http-equiv="refresh" content="5">`,
		"Deploying octocat/&lt;blog&gt;… this page refreshes",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("placeholder page lacks %q:\n%s", want, page)
		}
	}
	if strings.Contains(page, "<script") {
		t.Errorf("placeholder page has a script:\n%s", page)
	}
	s := tg.Status()
	if s.Live != nil || len(s.Releases) != 0 {
		t.Errorf("status while the placeholder is served: live %+v, releases %v; want none", s.Live, s.Releases)
	}
	if _, err := tg.Rollback(t.Context(), ""); !errors.Is(err, ErrNoOlderRelease) {
		t.Errorf("rollback while the placeholder is served: %v, want ErrNoOlderRelease", err)
	}

	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s = tg.waitLive(tip)
	if got := readCurrent(t, path, "index.html"); got != "hello" {
		t.Errorf("after the first deploy current/index.html = %q, want the site", got)
	}
	if _, err := os.Lstat(filepath.Join(path, "placeholder")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the placeholder is still on disk once a release is live: %v", err)
	}
	if len(s.Releases) != 1 {
		t.Errorf("releases = %v, want the one deployed", s.Releases)
	}

	tg.close()
	tg = start(t, cfg)
	if link, _ := os.Readlink(filepath.Join(path, "current")); link != filepath.Join("releases", s.Live.Release) {
		t.Errorf("after a restart current -> %q, want the release %s", link, s.Live.Release)
	}
	if _, err := os.Lstat(filepath.Join(path, "placeholder")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a restart with a release live made a placeholder: %v", err)
	}
}

// TestPlaceholderStaysWhileFirstBuildFails: a first build that fails leaves
// the placeholder served (the status says why), and a restart writes it
// again; a current that the user made is never replaced.
func TestPlaceholderStaysWhileFirstBuildFails(t *testing.T) {
	r := newRemote(t)
	tip := r.commit(map[string]string{"index.html": "hello"})
	path := filepath.Join(t.TempDir(), "site")
	cfg := Config{Path: path, Remote: r.bare, Commands: [][]string{{"no-such-builder-xyz"}}}
	tg := start(t, cfg)
	tg.waitResult("error", tip)
	if !strings.Contains(readCurrent(t, path, "index.html"), "Deploying the site…") {
		t.Errorf("after a failed first build current/index.html is not the placeholder")
	}
	tg.close()
	os.Remove(filepath.Join(path, "placeholder", "index.html"))
	start(t, cfg)
	if !strings.Contains(readCurrent(t, path, "index.html"), "Deploying the site…") {
		t.Errorf("a restart did not write the placeholder again")
	}

	own := filepath.Join(t.TempDir(), "site")
	if err := os.MkdirAll(filepath.Join(own, "current"), 0o755); err != nil {
		t.Fatal(err)
	}
	start(t, Config{Path: own, Remote: r.bare, Commands: [][]string{{"no-such-builder-xyz"}}})
	if fi, err := os.Lstat(filepath.Join(own, "current")); err != nil || !fi.IsDir() {
		t.Errorf("a current folder of the user's was replaced: %v %v", fi, err)
	}
}
