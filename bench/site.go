package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// plainSite returns a site of n files that needs no build: index.html and
// pages/pNNNN.html of about 2 KiB each.
func plainSite(n int) map[string][]byte {
	files := map[string][]byte{"index.html": plainIndex(0)}
	for i := 1; i < n; i++ {
		files[pageName(i)] = page(i, "")
	}
	return files
}

func pageName(i int) string { return fmt.Sprintf("pages/p%04d.html", i) }

// page is a 2 KiB page; marker, when set, tells one version from another.
func page(i int, marker string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "<!doctype html>\n<title>page %d</title>\n<p id=marker>%s</p>\n", i, marker)
	for b.Len() < 2048 {
		fmt.Fprintf(&b, "<p>Paragraph %d of page %d: the quick brown fox jumps over the lazy dog.</p>\n", b.Len(), i)
	}
	return b.Bytes()
}

// plainIndex is version v of index.html: each version differs in content and
// in length (4 KiB and up), so that a torn or mixed response shows.
func plainIndex(v int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "<!doctype html>\n<meta name=bench-version content=%d>\n<title>version %d</title>\n", v, v)
	for i := 0; b.Len() < 4096+97*(v%50); i++ {
		fmt.Fprintf(&b, "<p>version %d, line %d</p>\n", v, i)
	}
	fmt.Fprintf(&b, "<p>end of version %d</p>\n", v)
	return b.Bytes()
}

var versionRE = regexp.MustCompile(`bench-version[^0-9]{1,20}([0-9]+)`)

// versionOf returns the version a page announces, or -1.
func versionOf(b []byte) int {
	m := versionRE.FindSubmatch(b)
	if m == nil {
		return -1
	}
	v, err := strconv.Atoi(string(m[1]))
	if err != nil {
		return -1
	}
	return v
}

// hugoAvailable reports whether hugo is installed; without it the
// scenarios that build fall back to a site without a build.
func hugoAvailable() bool {
	_, err := exec.LookPath("hugo")
	return err == nil
}

// hugoSite returns a Hugo site of n posts. Its home page and
// static/version.txt both carry version v.
func hugoSite(n, v int) map[string][]byte {
	files := map[string][]byte{
		"hugo.toml": []byte(`baseURL = "http://127.0.0.1/"
title = "bench"
disableKinds = ["taxonomy", "term", "RSS", "sitemap", "robotsTXT", "404"]
`),
		"layouts/index.html": []byte(`<!doctype html>
<meta name="bench-version" content="{{ .Params.version }}">
<title>{{ .Site.Title }}</title>
{{ .Content }}
<ul>{{ range .Site.RegularPages }}<li><a href="{{ .RelPermalink }}">{{ .Title }}</a></li>{{ end }}</ul>
`),
		"layouts/_default/single.html": []byte("<!doctype html>\n<title>{{ .Title }}</title>\n{{ .Content }}\n"),
		"layouts/_default/list.html":   []byte("<!doctype html>\n<title>{{ .Title }}</title>\n{{ range .Pages }}<a href=\"{{ .RelPermalink }}\">{{ .Title }}</a>{{ end }}\n"),
	}
	for i := 1; i <= n; i++ {
		var b strings.Builder
		fmt.Fprintf(&b, "---\ntitle: \"Post %d\"\n---\n\n", i)
		for j := 0; j < 20; j++ {
			fmt.Fprintf(&b, "Paragraph %d of *post %d*: the quick brown fox jumps over the lazy dog.\n\n", j, i)
		}
		files[fmt.Sprintf("content/posts/post-%03d.md", i)] = []byte(b.String())
	}
	for k, b := range hugoVersion(v) {
		files[k] = b
	}
	return files
}

// hugoVersion returns the files that change from one version of the Hugo
// site to the next.
func hugoVersion(v int) map[string][]byte {
	return map[string][]byte{
		"content/_index.md":  []byte(fmt.Sprintf("---\nversion: %d\n---\n\nThis is version %d of the site.\n", v, v)),
		"static/version.txt": []byte(strconv.Itoa(v) + "\n"),
	}
}

// versionSet holds every committed version of a file, so that a response can
// be checked to be exactly one of them.
type versionSet struct {
	mu sync.RWMutex
	m  map[string]int
}

func (s *versionSet) add(v int, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]int{}
	}
	s.m[string(b)] = v
}

// has reports whether b is exactly one committed version.
func (s *versionSet) has(b []byte) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.m[string(b)]
	return ok
}

// mkdir creates a folder under the run's root.
func (r *run) mkdir(name string) (string, error) {
	dir := r.root + "/" + name
	return dir, os.MkdirAll(dir, 0o755)
}
