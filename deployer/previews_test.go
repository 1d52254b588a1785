package deployer

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// previewOf returns the status of number's preview, or nil.
func (tg *target) previewOf(number int) *PreviewStatus {
	for _, p := range tg.Status().Previews {
		if p.Number == number {
			return &p
		}
	}
	return nil
}

// waitPreview waits until number's preview is in state with commit live
// (any commit if "").
func (tg *target) waitPreview(number int, state, commit string) PreviewStatus {
	tg.t.Helper()
	var p *PreviewStatus
	waitFor(tg.t, "preview "+state, func() bool {
		p = tg.previewOf(number)
		return p != nil && p.State == state && (commit == "" || p.Live == commit)
	})
	return *p
}

func previewFile(t *testing.T, path, host, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(path, previewsName, host, currentName, name))
	if err != nil {
		t.Fatalf("reading %s of preview %s: %v", name, host, err)
	}
	return string(b)
}

func previewConfigFor(r *remote, path string) Config {
	return Config{Path: path, Remote: r.bare, Branch: "main", Depth: 1,
		Previews: &Previews{Host: "pr-{number}.preview.test"}}
}

// TestPreviewServesPullRequest: a preview serves the pull request's files
// while the site serves the branch's; a push to the pull request updates
// it; closing removes its folder; the builds get DEPLOY_URL and DEPLOY_PR.
func TestPreviewServesPullRequest(t *testing.T) {
	r := newRemote(t)
	main := r.commit(map[string]string{"index.html": "main"})
	cfg := previewConfigFor(r, filepath.Join(t.TempDir(), "site"))
	cfg.URL = "https://blog.test/"
	cfg.Commands = [][]string{{"sh", "-c", `printf '%s %s' "$DEPLOY_URL" "$DEPLOY_PR" > env.txt`}}
	tg := start(t, cfg)
	tg.waitLive(main)

	head := r.PullRequest(7, "pr", map[string]string{"index.html": "pull request 7"})
	if a := tg.PullRequest(PullRequest{Number: 7, Action: "opened", Head: head}); !a.Queued {
		t.Fatalf("opened: %+v", a)
	}
	p := tg.waitPreview(7, PreviewLive, head)
	if p.Host != "pr-7.preview.test" || p.URL != "https://pr-7.preview.test/" {
		t.Errorf("preview = %+v", p)
	}
	if got := previewFile(t, cfg.Path, p.Host, "index.html"); got != "pull request 7" {
		t.Errorf("preview serves %q", got)
	}
	if got := readCurrent(t, cfg.Path, "index.html"); got != "main" {
		t.Errorf("site serves %q", got)
	}
	if got := previewFile(t, cfg.Path, p.Host, "env.txt"); got != "https://pr-7.preview.test/ 7" {
		t.Errorf("preview's DEPLOY_URL DEPLOY_PR = %q", got)
	}
	if got := readCurrent(t, cfg.Path, "env.txt"); got != "https://blog.test/ " {
		t.Errorf("site's DEPLOY_URL DEPLOY_PR = %q", got)
	}
	if !tg.PreviewHost("PR-7.preview.test") || tg.PreviewHost("pr-8.preview.test") {
		t.Error("PreviewHost is wrong")
	}

	head2 := r.PullRequest(7, "pr again", map[string]string{"index.html": "pull request 7, pushed again"})
	tg.PullRequest(PullRequest{Number: 7, Action: "synchronize", Head: head2})
	tg.waitPreview(7, PreviewLive, head2)
	if got := previewFile(t, cfg.Path, p.Host, "index.html"); got != "pull request 7, pushed again" {
		t.Errorf("preview serves %q after a push", got)
	}
	if n := len(releaseDirs(t, filepath.Join(cfg.Path, previewsName, p.Host))); n != 1 {
		t.Errorf("the preview keeps %d releases, want 1", n)
	}

	if a := tg.PullRequest(PullRequest{Number: 7, Action: "closed"}); !a.Queued {
		t.Fatalf("closed: %+v", a)
	}
	waitFor(t, "the preview's folder removed", func() bool {
		_, err := os.Stat(filepath.Join(cfg.Path, previewsName, p.Host))
		return errors.Is(err, fs.ErrNotExist)
	})
	if tg.previewOf(7) != nil || tg.PreviewHost(p.Host) {
		t.Error("a closed pull request still has a preview")
	}
	if got := readCurrent(t, cfg.Path, "index.html"); got != "main" {
		t.Errorf("site serves %q after the close", got)
	}
}

// TestPreviewBounds: max holds ("limit"), a preview not updated for ttl is
// removed, and a reconcile removes previews of pull requests not open.
func TestPreviewBounds(t *testing.T) {
	r := newRemote(t)
	main := r.commit(map[string]string{"index.html": "main"})
	cfg := previewConfigFor(r, filepath.Join(t.TempDir(), "site"))
	cfg.Previews.Max = 2
	tg := start(t, cfg)
	tg.waitLive(main)
	for _, n := range []int{1, 2, 3} {
		head := r.PullRequest(n, "pr", map[string]string{"index.html": "pr"})
		a := tg.PullRequest(PullRequest{Number: n, Action: "opened", Head: head})
		if n <= 2 && !a.Queued {
			t.Fatalf("pull request %d: %+v", n, a)
		}
		if n == 3 && (a.Queued || !strings.HasPrefix(a.Reason, "limit")) {
			t.Fatalf("pull request 3 over max: %+v", a)
		}
	}
	tg.waitPreview(1, PreviewLive, "")
	tg.waitPreview(2, PreviewLive, "")
	if tg.previewOf(3) != nil {
		t.Fatal("a preview over max exists")
	}

	if gone := tg.ReconcilePreviews([]int{2, 3}); len(gone) != 1 || gone[0] != 1 {
		t.Fatalf("reconcile removed %v, want [1]", gone)
	}
	waitFor(t, "preview 1 removed", func() bool {
		_, err := os.Stat(filepath.Join(cfg.Path, previewsName, "pr-1.preview.test"))
		return errors.Is(err, fs.ErrNotExist)
	})

	// ttl: preview 2 is left alone for longer than it.
	cfg.Previews = &Previews{Host: cfg.Previews.Host, Max: 2, TTL: 2 * time.Second}
	if err := tg.Update(cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "preview 2 removed past its ttl", func() bool {
		_, err := os.Stat(filepath.Join(cfg.Path, previewsName, "pr-2.preview.test"))
		return errors.Is(err, fs.ErrNotExist) && tg.previewOf(2) == nil
	})
}

// TestPreviewSurvivesRestart: a live preview keeps serving, and is known,
// after a restart, with no build.
func TestPreviewSurvivesRestart(t *testing.T) {
	r := newRemote(t)
	main := r.commit(map[string]string{"index.html": "main"})
	cfg := previewConfigFor(r, filepath.Join(t.TempDir(), "site"))
	tg := start(t, cfg)
	tg.waitLive(main)
	head := r.PullRequest(4, "pr", map[string]string{"index.html": "pr 4"})
	tg.PullRequest(PullRequest{Number: 4, Action: "opened", Head: head})
	tg.waitPreview(4, PreviewLive, head)
	tg.close()

	tg2 := start(t, cfg)
	if got := previewFile(t, cfg.Path, "pr-4.preview.test", "index.html"); got != "pr 4" {
		t.Fatalf("after a restart the preview serves %q", got)
	}
	p := tg2.waitPreview(4, PreviewLive, head)
	if !tg2.PreviewHost(p.Host) {
		t.Error("the preview's host is unknown after a restart")
	}
}

// TestPreviewYieldsToSite: a push to the branch during a slow preview build
// goes live without waiting for it: the preview's build is cancelled and
// queued again.
func TestPreviewYieldsToSite(t *testing.T) {
	r := newRemote(t)
	main := r.commit(map[string]string{"index.html": "main", "slow": ""})
	cfg := previewConfigFor(r, filepath.Join(t.TempDir(), "site"))
	// Slow only where the file says so: the pull request's builds.
	cfg.Commands = [][]string{{"sh", "-c", `if [ -s slow ]; then sleep 30; fi`}}
	tg := start(t, cfg)
	tg.waitLive(main)
	head := r.PullRequest(5, "pr", map[string]string{"index.html": "pr 5", "slow": "yes"})
	tg.PullRequest(PullRequest{Number: 5, Action: "opened", Head: head})
	waitFor(t, "the preview building", func() bool {
		p := tg.previewOf(5)
		return p != nil && p.State == PreviewBuilding && p.Head == head
	})
	time.Sleep(200 * time.Millisecond) // into its sleep
	next := r.commit(map[string]string{"index.html": "main 2"})
	tg.Wake(ReasonDelivery)
	tg.waitLive(next)
	// Had the site waited for the preview's build (30 s of sleep), the
	// preview would be live by now.
	if p := tg.previewOf(5); p == nil || p.Live != "" {
		t.Errorf("the site went live after the preview's build: %+v", p)
	}
	waitFor(t, "the preview's build to yield", func() bool {
		return tg.logs.FilterMessage("preview build yielded to the site's build; queued again").Len() == 1
	})
	waitFor(t, "the preview queued again", func() bool {
		p := tg.previewOf(5)
		return p != nil && (p.State == PreviewQueued || p.State == PreviewBuilding)
	})
}

// TestPreviewForks: a fork's pull request gets nothing until labelled;
// then exactly the labelled commit is built; a later push waits for the
// label again, and a replayed old label approves nothing newer. The fork's
// build gets no env values and cannot write the site's cache.
func TestPreviewForks(t *testing.T) {
	requireBwrap(t)
	r := newRemote(t)
	main := r.commit(map[string]string{"index.html": "main", "keep/cached": "site's cache"})
	cfg := previewConfigFor(r, filepath.Join(t.TempDir(), "site"))
	cfg.Sandbox = true
	cfg.Env = []string{"SECRET_VALUE=hunter2"}
	cfg.Cache = []string{"keep"}
	cfg.Previews.ForksLabel = "preview"
	cfg.Commands = [][]string{{"sh", "-c", `printf '%s' "$SECRET_VALUE" > env.txt; [ -z "$DEPLOY_PR" ] || { echo poisoned > keep/cached; echo poisoned > "$(git rev-parse --git-common-dir)/config"; } 2>/dev/null; true`}}
	tg := start(t, cfg)
	tg.waitLive(main)
	if got := readCurrent(t, cfg.Path, "env.txt"); got != "hunter2" {
		t.Fatalf("the site's build got env %q", got)
	}

	head := r.PullRequest(9, "fork", map[string]string{"index.html": "fork 1"})
	if a := tg.PullRequest(PullRequest{Number: 9, Action: "opened", Head: head, Fork: true}); a.Queued {
		t.Fatalf("an unlabelled fork was queued: %+v", a)
	}
	if tg.previewOf(9) != nil {
		t.Fatal("an unlabelled fork has a preview")
	}
	if a := tg.PullRequest(PullRequest{Number: 9, Action: "labeled", Label: "other", Head: head, Fork: true}); a.Queued {
		t.Fatalf("another label approved a fork: %+v", a)
	}
	tg.PullRequest(PullRequest{Number: 9, Action: "labeled", Label: "preview", Head: head, Fork: true})
	p := tg.waitPreview(9, PreviewLive, head)
	if got := previewFile(t, cfg.Path, p.Host, "index.html"); got != "fork 1" {
		t.Errorf("the fork's preview serves %q", got)
	}
	if got := previewFile(t, cfg.Path, p.Host, "env.txt"); got != "" {
		t.Errorf("the fork's build read env %q", got)
	}

	// A later push, and a replay of the old label: not built.
	head2 := r.PullRequest(9, "fork again", map[string]string{"index.html": "fork 2"})
	tg.PullRequest(PullRequest{Number: 9, Action: "synchronize", Head: head2, Fork: true})
	tg.waitPreview(9, PreviewWaiting, head)
	tg.PullRequest(PullRequest{Number: 9, Action: "labeled", Label: "preview", Head: head, Fork: true})
	tg.waitPreview(9, PreviewWaiting, head)
	if got := previewFile(t, cfg.Path, p.Host, "index.html"); got != "fork 1" {
		t.Errorf("an unlabelled push went live: %q", got)
	}
	tg.PullRequest(PullRequest{Number: 9, Action: "labeled", Label: "preview", Head: head2, Fork: true})
	tg.waitPreview(9, PreviewLive, head2)
	if got := previewFile(t, cfg.Path, p.Host, "index.html"); got != "fork 2" {
		t.Errorf("the labelled push serves %q", got)
	}

	// The site's cache and cache repository are as they were.
	if got := previewFile(t, cfg.Path, p.Host, "keep/cached"); got != "poisoned\n" {
		t.Errorf("the fork's build did not run its commands (%q): the test proves nothing", got)
	}
	if got := readCurrent(t, cfg.Path, "keep/cached"); got != "site's cache" {
		t.Errorf("the site's cache holds %q", got)
	}
	conf, _ := os.ReadFile(filepath.Join(cfg.Path, cacheName, "config"))
	if strings.Contains(string(conf), "poisoned") {
		t.Error("the fork's build wrote the cache repository's config")
	}
}

// TestPreviewForksNeedSandbox: forks label without sandbox is refused.
func TestPreviewForksNeedSandbox(t *testing.T) {
	cfg := Config{Path: t.TempDir(), Remote: "/nowhere",
		Previews: &Previews{Host: "pr-{number}.test", ForksLabel: "preview"}}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "sandbox") {
		t.Errorf("Validate = %v, want the sandbox named", err)
	}
	cfg.Previews = &Previews{Host: "pr.test"}
	if err := cfg.Validate(); err == nil {
		t.Error("a host template without {number} was accepted")
	}
}

// TestPreviewLinksSiteRelease: without commands, a preview's first release
// shares the files it has in common with the site's live release (hard
// links), and writes only what the pull request changed.
func TestPreviewLinksSiteRelease(t *testing.T) {
	r := newRemote(t)
	main := r.commit(map[string]string{"index.html": "main", "same.txt": "unchanged"})
	cfg := previewConfigFor(r, filepath.Join(t.TempDir(), "site"))
	tg := start(t, cfg)
	tg.waitLive(main)
	head := r.PullRequest(2, "pr", map[string]string{"index.html": "pr 2"})
	tg.PullRequest(PullRequest{Number: 2, Action: "opened", Head: head})
	p := tg.waitPreview(2, PreviewLive, head)
	stat := func(dir, name string) os.FileInfo {
		fi, err := os.Stat(filepath.Join(dir, currentName, name))
		if err != nil {
			t.Fatal(err)
		}
		return fi
	}
	pdir := filepath.Join(cfg.Path, previewsName, p.Host)
	if !os.SameFile(stat(cfg.Path, "same.txt"), stat(pdir, "same.txt")) {
		t.Error("an unchanged file was written again, not linked from the site's release")
	}
	if os.SameFile(stat(cfg.Path, "index.html"), stat(pdir, "index.html")) {
		t.Error("a changed file is shared with the site's release")
	}
	if got := readCurrent(t, cfg.Path, "index.html"); got != "main" {
		t.Errorf("the site serves %q", got)
	}
}

// TestPreviewRefs: a preview is fetched from the remote's namespace of
// pull requests' heads: GitLab keeps a merge request's head in
// refs/merge-requests/<iid>/head, not refs/pull; a namespace that is not
// one is refused.
func TestPreviewRefs(t *testing.T) {
	r := newRemote(t)
	main := r.commit(map[string]string{"index.html": "main"})
	head := r.PullRequest(3, "mr", map[string]string{"index.html": "merge request 3"})
	// The head as GitLab keeps it, and nothing at refs/pull/3/head.
	r.Git("push", "--quiet", "origin", head+":refs/merge-requests/3/head", ":refs/pull/3/head")

	cfg := previewConfigFor(r, filepath.Join(t.TempDir(), "site"))
	cfg.Previews.Refs = MergeRequestRefs
	tg := start(t, cfg)
	tg.waitLive(main)
	if a := tg.PullRequest(PullRequest{Number: 3, Action: "opened", Head: head}); !a.Queued {
		t.Fatalf("opened: %+v", a)
	}
	p := tg.waitPreview(3, PreviewLive, head)
	if got := previewFile(t, cfg.Path, p.Host, "index.html"); got != "merge request 3" {
		t.Errorf("preview serves %q", got)
	}

	for _, refs := range []string{"pull", "refs/pull/", "refs/../x", "refs/a b", "refs/x:y"} {
		bad := previewConfigFor(r, filepath.Join(t.TempDir(), "site"))
		bad.Previews.Refs = refs
		if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "is not a ref namespace") {
			t.Errorf("refs %q: error %v", refs, err)
		}
	}
}
