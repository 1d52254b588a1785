package main

import (
	"bytes"
	"fmt"
	"image"
	"image/jpeg"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
)

// hugoCache measures what `cache resources/_gen` saves on a Hugo site
// whose templates process 40 large photos (2000×1500 JPEG, resized and
// cropped: 80 images made): two sites from the same files, one without
// cache (every build cold) and one with it, get the same one-line content
// change round after round, in turns, and each deploy is timed from the
// delivery to the change served. Then the cached site gets a commit whose
// build empties every cached image in place and fails, and the next good
// build must be as warm as before and serve the same images as the cold
// site (with hard links in place of copies, it would serve empty files).
func (r *run) hugoCache() error {
	if !hugoAvailable() {
		r.rep.info("skipped", "hugo is not installed")
		return nil
	}
	photos, w, h, rounds := 40, 2000, 1500, 3
	if r.short {
		photos, w, h, rounds = 3, 240, 180, 1
	}
	r.logf("hugocache: making %d photos of %d×%d", photos, w, h)
	files := hugoPhotoSite(photos, w, h)
	var photoBytes int
	for name, b := range files {
		if strings.HasSuffix(name, ".jpg") {
			photoBytes += len(b)
		}
	}
	// The second command fails the build of a commit that has a file named
	// "fail", after emptying every file in resources/_gen in place: what a
	// build that breaks half-way through writing its cache leaves.
	breaker := "command sh -c `if [ -e fail ]; then find resources/_gen -type f -exec sh -c ': > \"$0\"' {} \\; ; echo broke the cache; exit 1; fi`"
	base := []string{"command hugo --minify", breaker, "publish public", "timeout 20m"}
	cold, err := r.newTestbedWithin("hugocache-cold", "", files, base, 20*time.Minute)
	if err != nil {
		return err
	}
	defer cold.caddy.stop()
	warm, err := r.newTestbedWithin("hugocache-warm", "", files, append(slices.Clone(base), "cache resources/_gen"), 20*time.Minute)
	if err != nil {
		return err
	}
	defer warm.caddy.stop()

	// deploy commits a one-line change to tb's site and waits until it is
	// served.
	prev := map[*testbed]string{cold: cold.first, warm: warm.first}
	deploy := func(tb *testbed, v int, extra map[string]string) (time.Duration, error) {
		change := map[string]string{"content/_index.md": fmt.Sprintf("---\ntitle: version %d\n---\n\nVersion %d.\n", v, v)}
		for k, x := range extra {
			change[k] = x
		}
		sha, err := tb.repo.Commit(fmt.Sprintf("version %d", v), change)
		if err != nil {
			return 0, err
		}
		start := time.Now()
		if d := r.push(tb.site, prev[tb], sha); d.err != nil {
			return 0, d.err
		}
		prev[tb] = sha
		if _, err := waitLive(tb.site.path, sha, 20*time.Minute); err != nil {
			return 0, err
		}
		took := time.Since(start)
		if err := servesVersion(tb.site, v); err != nil {
			return 0, err
		}
		return took, nil
	}

	var coldTimes, warmTimes []time.Duration
	for i := 1; i <= rounds; i++ {
		r.logf("hugocache: round %d of %d", i, rounds)
		c, err := deploy(cold, i, nil)
		if err != nil {
			return fmt.Errorf("cold site, round %d: %w", i, err)
		}
		wt, err := deploy(warm, i, nil)
		if err != nil {
			return fmt.Errorf("cached site, round %d: %w", i, err)
		}
		coldTimes, warmTimes = append(coldTimes, c), append(warmTimes, wt)
	}
	carriedLine := carriedLog(warm)
	want, err := servedImages(cold.site)
	if err != nil {
		return err
	}
	got, err := servedImages(warm.site)
	if err != nil {
		return err
	}
	r.rep.check("cached site serves the cold site's images", sameImages(got, want), "all, byte for byte", sameImages(got, want) == "all, byte for byte")

	// A build that breaks its cache and fails; then the next good one.
	v := rounds + 1
	sha, err := warm.repo.Commit("breaks", map[string]string{"fail": "yes\n", "content/_index.md": fmt.Sprintf("---\ntitle: version %d\n---\n", v)})
	if err != nil {
		return err
	}
	before := liveRelease(warm.site.path)
	if d := r.push(warm.site, prev[warm], sha); d.err != nil {
		return d.err
	}
	prev[warm] = sha
	st, err := warm.caddy.waitStatus("the failing build's end", 20*time.Minute, func(s deployer.Status) bool {
		return s.Running == nil && s.Last != nil && s.Last.Commit == sha
	})
	if err != nil {
		return err
	}
	broke := strings.Contains(st.Last.OutputTail, "broke the cache")
	failedOK := st.Last.Result == "error" && broke && liveRelease(warm.site.path) == before
	r.rep.check("failing build (empties its cache in place, exits 1)", fmt.Sprintf("%s, emptied %v, live stays %v", st.Last.Result, broke, liveRelease(warm.site.path) == before),
		"error, emptied true, live stays true", failedOK)
	if err := warm.repo.Remove("fail"); err != nil {
		return err
	}
	after, err := deploy(warm, v+1, nil)
	if err != nil {
		return fmt.Errorf("cached site, after the failed build: %w", err)
	}
	got, err = servedImages(warm.site)
	if err != nil {
		return err
	}
	afterLine := carriedLog(warm)
	fromGood := strings.Contains(afterLine, "from "+before+" (") && !strings.Contains(afterLine, "(0 files")
	r.rep.check("the next good build's cache comes from", afterLine, "the last good release ("+before+")", fromGood)
	same := sameImages(got, want)
	r.rep.check("after it, the next good build serves the cold site's images", same, "all, byte for byte", same == "all, byte for byte")

	slices.Sort(coldTimes)
	slices.Sort(warmTimes)
	ratio := float64(median(warmTimes)) / float64(median(coldTimes))
	afterRatio := float64(after) / float64(median(coldTimes))
	r.rep.info("site", fmt.Sprintf("Hugo, %d photos of %d×%d JPEG (%.0f MB in all), each resized (800 wide) and cropped (400×300) by the template: %d images made; `hugo --minify`; %d rounds of a one-line content change per site, in turns",
		photos, w, h, float64(photoBytes)/1e6, len(want), rounds))
	r.rep.info("delivery → served, no cache (cold): median / p90 / max", triple(coldTimes))
	r.rep.info("delivery → served, `cache resources/_gen`: median / p90 / max", triple(warmTimes))
	r.rep.info("carried into the last cached build", carriedLine)
	r.rep.perf("cached ÷ cold, medians", fmt.Sprintf("%.2f×", ratio), "≤ 0.40×", ratio <= 0.4)
	r.rep.perf("first good build after the failed one ÷ cold median", fmt.Sprintf("%v, %.2f×", roundDur(after), afterRatio), "≤ 0.40×", afterRatio <= 0.4)
	return nil
}

// hugoPhotoSite returns a Hugo site of n photos of w×h pixels whose home
// page template resizes and crops each.
func hugoPhotoSite(n, w, h int) map[string]string {
	files := map[string]string{
		"hugo.toml": "baseURL = \"http://127.0.0.1/\"\ntitle = \"photos\"\n" +
			"disableKinds = [\"taxonomy\", \"term\", \"RSS\", \"sitemap\", \"robotsTXT\", \"404\"]\n",
		"content/_index.md": "---\ntitle: version 0\n---\n\nVersion 0.\n",
		"layouts/index.html": `<!doctype html>
<title>{{ .Title }}</title>
{{ .Content }}
{{ range resources.Match "photos/*.jpg" }}
{{ $big := .Resize "800x q80" }}{{ $thumb := .Fill "400x300 q80" }}
<a href="{{ $big.RelPermalink }}"><img src="{{ $thumb.RelPermalink }}" width="{{ $thumb.Width }}" height="{{ $thumb.Height }}"></a>
{{ end }}
`,
	}
	for i := range n {
		files[fmt.Sprintf("assets/photos/photo-%02d.jpg", i)] = photo(i, w, h)
	}
	return files
}

// photo returns a JPEG of w×h pixels: gradients with noise, so that it is
// neither trivial to encode nor to resize, about as large as a photo.
func photo(seed, w, h int) string {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	rnd := rand.New(rand.NewPCG(uint64(seed), 7))
	for y := range h {
		for x := range w {
			n := rnd.IntN(64) - 32
			o := img.PixOffset(x, y)
			img.Pix[o] = clamp(x*255/w + n)
			img.Pix[o+1] = clamp(y*255/h + n)
			img.Pix[o+2] = clamp((x+y+seed*37)%256 + n)
			img.Pix[o+3] = 255
		}
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 85}); err != nil {
		panic(err)
	}
	return b.String()
}

func clamp(v int) byte { return byte(min(max(v, 0), 255)) }

// servesVersion checks that the site's home page says version v.
func servesVersion(s *site, v int) error {
	status, body, err := get(s.url("/"))
	if err != nil {
		return err
	}
	if want := fmt.Sprintf("<title>version %d</title>", v); status != 200 || !bytes.Contains(body, []byte(want)) {
		return fmt.Errorf("GET /: %d, want a page with %s", status, want)
	}
	return nil
}

var imageRE = regexp.MustCompile(`(?:src|href)="?(/[^" >]+\.jpg)`)

// servedImages returns the images the home page links to, each as served.
func servedImages(s *site) (map[string][]byte, error) {
	_, page, err := get(s.url("/"))
	if err != nil {
		return nil, err
	}
	imgs := map[string][]byte{}
	for _, m := range imageRE.FindAllSubmatch(page, -1) {
		p := string(m[1])
		status, body, err := get(s.url(p))
		if err != nil {
			return nil, err
		}
		if status != 200 {
			return nil, fmt.Errorf("GET %s: %d", p, status)
		}
		imgs[p] = body
	}
	if len(imgs) == 0 {
		return nil, fmt.Errorf("the home page links to no image:\n%s", page)
	}
	return imgs, nil
}

// sameImages says whether got holds exactly want's images, with the same
// bytes, none empty.
func sameImages(got, want map[string][]byte) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d images, the cold site %d", len(got), len(want))
	}
	for p, b := range want {
		switch {
		case len(got[p]) == 0:
			return fmt.Sprintf("%s is empty", p)
		case !bytes.Equal(got[p], b):
			return fmt.Sprintf("%s differs", p)
		}
	}
	return "all, byte for byte"
}

// carriedLog returns what the live release's build log says it carried.
func carriedLog(tb *testbed) string {
	b, err := os.ReadFile(filepath.Join(tb.site.path, "releases", liveRelease(tb.site.path)+".log"))
	if err != nil {
		return err.Error()
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "cache: carried "); ok {
			return strings.TrimSpace(rest)
		}
	}
	return "nothing"
}
