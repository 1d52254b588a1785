package main

import (
	"fmt"
	"maps"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// The sites the scenarios deploy. Each version of a site says which it is,
// in its home page and in version.txt, so that what is served can be told
// apart, version by version.

// plainSite returns a site of n files that needs no build: index.html and
// pages/pNNNN.html of about 2 KiB each.
func plainSite(n int) map[string]string {
	files := map[string]string{"index.html": plainIndex(0)}
	for i := 1; i < n; i++ {
		files[pageName(i)] = page(i, "")
	}
	return files
}

func pageName(i int) string { return fmt.Sprintf("pages/p%04d.html", i) }

// page is a 2 KiB page; marker, when set, tells one version from another.
func page(i int, marker string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "<!doctype html>\n<title>page %d</title>\n<p id=marker>%s</p>\n", i, marker)
	for b.Len() < 2048 {
		fmt.Fprintf(&b, "<p>Paragraph %d of page %d: the quick brown fox jumps over the lazy dog.</p>\n", b.Len(), i)
	}
	return b.String()
}

// plainIndex is version v of index.html: each version differs in content and
// in length (4 KiB and up), so that a torn or mixed response shows.
func plainIndex(v int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "<!doctype html>\n<meta name=bench-version content=%d>\n<title>version %d</title>\n", v, v)
	for i := 0; b.Len() < 4096+97*(v%50); i++ {
		fmt.Fprintf(&b, "<p>version %d, line %d</p>\n", v, i)
	}
	fmt.Fprintf(&b, "<p>end of version %d</p>\n", v)
	return b.String()
}

var versionRE = regexp.MustCompile(`bench-version[^0-9]{1,20}([0-9]+)`)

// versionOf returns the version a home page announces, or -1.
func versionOf(b []byte) int {
	if m := versionRE.FindSubmatch(b); m != nil {
		if v, err := strconv.Atoi(string(m[1])); err == nil {
			return v
		}
	}
	return -1
}

// hugoAvailable reports whether hugo is installed; without it the
// scenarios that build fall back to a site without a build.
func hugoAvailable() bool {
	_, err := exec.LookPath("hugo")
	return err == nil
}

// buildSite returns the files of the site the scenarios that build use (a
// Hugo site of n posts, built with hugo --minify), the github_webhook lines
// for it, and what it is. Without hugo it is a site without a build.
func buildSite(n int) (files map[string]string, extra []string, what string) {
	if !hugoAvailable() {
		files = plainSite(n)
		maps.Copy(files, buildVersion(0))
		return files, nil, fmt.Sprintf("%d files, no build (hugo not installed)", n)
	}
	files = map[string]string{
		"hugo.toml": `baseURL = "http://127.0.0.1/"
title = "bench"
disableKinds = ["taxonomy", "term", "RSS", "sitemap", "robotsTXT", "404"]
`,
		"layouts/index.html": `<!doctype html>
<meta name="bench-version" content="{{ .Params.version }}">
<title>{{ .Site.Title }}</title>
{{ .Content }}
<ul>{{ range .Site.RegularPages }}<li><a href="{{ .RelPermalink }}">{{ .Title }}</a></li>{{ end }}</ul>
`,
		"layouts/_default/single.html": "<!doctype html>\n<title>{{ .Title }}</title>\n{{ .Content }}\n",
		"layouts/_default/list.html":   "<!doctype html>\n<title>{{ .Title }}</title>\n{{ range .Pages }}<a href=\"{{ .RelPermalink }}\">{{ .Title }}</a>{{ end }}\n",
	}
	for i := 1; i <= n; i++ {
		var b strings.Builder
		fmt.Fprintf(&b, "---\ntitle: \"Post %d\"\n---\n\n", i)
		for j := range 20 {
			fmt.Fprintf(&b, "Paragraph %d of *post %d*: the quick brown fox jumps over the lazy dog.\n\n", j, i)
		}
		files[fmt.Sprintf("content/posts/post-%03d.md", i)] = b.String()
	}
	maps.Copy(files, buildVersion(0))
	return files, []string{"command hugo --minify", "publish public"}, fmt.Sprintf("Hugo site of %d posts, `hugo --minify`", n)
}

// buildVersion returns the files that change in version v of buildSite.
func buildVersion(v int) map[string]string {
	if hugoAvailable() {
		return map[string]string{
			"content/_index.md":  fmt.Sprintf("---\nversion: %d\n---\n\nThis is version %d of the site.\n", v, v),
			"static/version.txt": fmt.Sprintf("%d\n", v),
		}
	}
	return map[string]string{"index.html": plainIndex(v), "version.txt": fmt.Sprintf("%d\n", v)}
}

// servedVersion returns the version /version.txt of a site says.
func servedVersion(s *site) (int, error) {
	status, body, err := get(s.url("/version.txt"))
	if err != nil {
		return -1, err
	}
	if status != http.StatusOK {
		return -1, fmt.Errorf("GET /version.txt: %d", status)
	}
	return strconv.Atoi(strings.TrimSpace(string(body)))
}

// versionSet holds every committed version of a file, so that a response can
// be checked to be exactly one of them.
type versionSet struct {
	mu sync.RWMutex
	m  map[string]bool
}

func (s *versionSet) add(b string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]bool{}
	}
	s.m[b] = true
}

// has reports whether b is exactly one committed version.
func (s *versionSet) has(b []byte) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.m[string(b)]
}
