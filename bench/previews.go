package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// previewDomain is the domain of the bench's previews.
const previewDomain = "preview.bench"

// previews measures, for the 2,000-file site without a build and for the
// Hugo site, the time from a synchronize delivery to the preview serving
// the new commit, next to the time from a push delivery to the site
// serving it, alternating in one run; then the disk that 10 previews of
// the 2,000-file site take.
func (r *run) previews() error {
	rounds := 10
	if r.short {
		rounds = 2
	}
	if err := r.previewLatency("no build", plainSite(2000), nil, rounds, func(v int, marker string) (map[string]string, string, string) {
		return map[string]string{pageName(v): page(v, marker)}, "/" + pageName(v), "<p id=marker>" + marker + "</p>"
	}); err != nil {
		return err
	}
	if hugoAvailable() {
		files, err := siteFiles("hugo-blog")
		if err != nil {
			return err
		}
		extra := []string{"command hugo --minify", "publish public"}
		hrounds := max(rounds/2, 2)
		if err := r.previewLatency("Hugo test site (testdata/sites/hugo-blog)", files, extra, hrounds, func(v int, marker string) (map[string]string, string, string) {
			return map[string]string{"content/posts/bench.md": "---\ntitle: Bench\n---\n\n" + marker + "\n"}, "/posts/bench/", marker
		}); err != nil {
			return err
		}
	} else {
		r.rep.info("Hugo test site", "skipped: hugo is not installed")
	}
	return r.previewDisk()
}

// previewBed starts Caddy deploying files with previews, the second site
// block serving them.
func (r *run) previewBed(name string, files map[string]string, extra []string, max int) (*testbed, error) {
	dir, err := r.mkdir(name)
	if err != nil {
		return nil, err
	}
	repo, err := testkit.NewRepo(dir, benchBranch)
	if err != nil {
		return nil, err
	}
	first, err := repo.Commit("version 0", files)
	if err != nil {
		return nil, err
	}
	ports, err := testkit.FreePorts(1)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "site")
	s := &site{path: path, port: ports[0], remote: "file://" + repo.Bare,
		extra: append(slices.Clone(extra), "previews pr-{number}."+previewDomain+" {", "max "+strconv.Itoa(max), "}"),
		more:  fmt.Sprintf("\nhttp://*.%s:%d {\n\troot * %s/previews/{host}/current\n\tfile_server\n}\n", previewDomain, ports[0], path),
	}
	p, err := r.startCaddy(dir, s)
	if err != nil {
		return nil, err
	}
	if _, err := waitLive(s.path, first, 5*time.Minute); err != nil {
		p.stop()
		return nil, err
	}
	return &testbed{dir: dir, repo: repo, site: s, caddy: p, first: first}, nil
}

// pullRequest sends a pull_request delivery for number at head.
func (r *run) pullRequest(s *site, number int, action, head string) error {
	body, err := testkit.PullRequestPayload(testkit.PullRequestEvent{Repo: benchRepo, Base: benchBranch, Number: number, Action: action, Head: head})
	if err != nil {
		return err
	}
	req, err := testkit.Delivery{Event: "pull_request", Secret: r.secret, Body: body}.Request(s.url(hookPath))
	if err != nil {
		return err
	}
	d := send(deliveryClient, req)
	if d.err == nil && d.status != http.StatusAccepted {
		d.err = fmt.Errorf("pull_request %s answered %d: %s", action, d.status, d.body)
	}
	return d.err
}

// waitPreviewServed waits until path of host (the site's when "") holds want.
func waitPreviewServed(s *site, host, path, want string, timeout time.Duration) error {
	start := time.Now()
	for {
		req, _ := http.NewRequest(http.MethodGet, s.url(path), nil)
		if host != "" {
			req.Host = host
		}
		resp, err := getClient.Do(req)
		if err == nil {
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && bytes.Contains(b.Bytes(), []byte(want)) {
				return nil
			}
		}
		if time.Since(start) > timeout {
			return fmt.Errorf("%s%s did not serve %q within %v", host, path, want, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// previewLatency alternates pushes to the branch and to pull request 1,
// timing each from its delivery to the change served.
func (r *run) previewLatency(what string, files map[string]string, extra []string, rounds int,
	change func(v int, marker string) (files map[string]string, path, want string)) error {
	tb, err := r.previewBed("previews-"+strings.Fields(what)[0], files, extra, 10)
	if err != nil {
		return err
	}
	defer tb.caddy.stop()
	s := tb.site
	host := "pr-1." + previewDomain
	// The pull request's first push, opened: its first build.
	f, p, want := change(1000, "opened "+testkit.DeliveryID())
	head, err := tb.repo.PullRequest(1, "pr", f)
	if err != nil {
		return err
	}
	if err := r.pullRequest(s, 1, "opened", head); err != nil {
		return err
	}
	if err := waitPreviewServed(s, host, p, want, 5*time.Minute); err != nil {
		return err
	}
	var toMain, toPreview []time.Duration
	prev := tb.first
	for i := 1; i <= rounds; i++ {
		f, p, want := change(i, fmt.Sprintf("main %d %s", i, testkit.DeliveryID()))
		sha, err := tb.repo.Commit(fmt.Sprint("main ", i), f)
		if err != nil {
			return err
		}
		start := time.Now()
		if d := r.push(s, prev, sha); d.err != nil {
			return d.err
		}
		if err := waitPreviewServed(s, "", p, want, 5*time.Minute); err != nil {
			return err
		}
		toMain = append(toMain, time.Since(start))
		prev = sha

		f, p, want = change(2000+i, fmt.Sprintf("pr %d %s", i, testkit.DeliveryID()))
		head, err := tb.repo.PullRequest(1, fmt.Sprint("pr ", i), f)
		if err != nil {
			return err
		}
		start = time.Now()
		if err := r.pullRequest(s, 1, "synchronize", head); err != nil {
			return err
		}
		if err := waitPreviewServed(s, host, p, want, 5*time.Minute); err != nil {
			return err
		}
		toPreview = append(toPreview, time.Since(start))
	}
	r.rep.check(what+": pushes served, the site's and the preview's", fmt.Sprintf("%d and %d of %d", len(toMain), len(toPreview), rounds),
		fmt.Sprintf("%d and %d", rounds, rounds), len(toMain) == rounds && len(toPreview) == rounds)
	slices.Sort(toMain)
	slices.Sort(toPreview)
	ratio := float64(pct(toPreview, 50)) / float64(pct(toMain, 50))
	r.rep.info(what+": push → site serves it, median / p90 / max", triple(toMain))
	r.rep.info(what+": synchronize → preview serves it, median / p90 / max", triple(toPreview))
	r.rep.perf(what+": preview median ÷ site median", fmt.Sprintf("%.2f×", ratio), "≤ 1.2×", ratio <= 1.2)
	return nil
}

// previewDisk opens 10 pull requests of one changed page each against the
// 2,000-file site and reports the disk they take, with du counting each
// inode once: the previews alone, and what they add to the site.
func (r *run) previewDisk() error {
	n := 10
	if r.short {
		n = 2
	}
	tb, err := r.previewBed("previews-disk", plainSite(2000), nil, n)
	if err != nil {
		return err
	}
	defer tb.caddy.stop()
	s := tb.site
	for i := 1; i <= n; i++ {
		marker := fmt.Sprintf("pr %d %s", i, testkit.DeliveryID())
		head, err := tb.repo.PullRequest(i, "pr", map[string]string{pageName(i): page(i, marker)})
		if err != nil {
			return err
		}
		if err := r.pullRequest(s, i, "opened", head); err != nil {
			return err
		}
		if err := waitPreviewServed(s, fmt.Sprintf("pr-%d.%s", i, previewDomain), "/"+pageName(i), marker, 5*time.Minute); err != nil {
			return err
		}
	}
	site, err := duKiB(filepath.Join(s.path, "releases"))
	if err != nil {
		return err
	}
	both, err := duKiB(filepath.Join(s.path, "releases"), filepath.Join(s.path, "previews"))
	if err != nil {
		return err
	}
	alone, err := duKiB(filepath.Join(s.path, "previews"))
	if err != nil {
		return err
	}
	r.rep.info("disk: the site's releases (2,000 files of 2 KiB)", fmt.Sprintf("%d KiB", site))
	r.rep.info(fmt.Sprintf("disk: %d previews, each one page changed, added to the site's", n), fmt.Sprintf("%d KiB (%d KiB each)", both-site, (both-site)/int64(n)))
	r.rep.info(fmt.Sprintf("disk: %d previews counted alone (links to the site's files counted in full)", n), fmt.Sprintf("%d KiB", alone))
	return nil
}

// siteFiles reads testdata/sites/<name> of the clone.
func siteFiles(name string) (map[string]string, error) {
	root, err := testkit.Root()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(root, "testdata", "sites", name)
	files := map[string]string{}
	err = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	return files, err
}

// duKiB returns du -sk's total for paths, each inode counted once.
func duKiB(paths ...string) (int64, error) {
	out, err := exec.Command("du", append([]string{"-skc"}, paths...)...).Output()
	if err != nil {
		return 0, fmt.Errorf("du: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	f := strings.Fields(lines[len(lines)-1])
	return strconv.ParseInt(f[0], 10, 64)
}
