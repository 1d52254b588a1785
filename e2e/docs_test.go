package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// docFiles lists the documentation, relative to the module root: README.md,
// CONTRIBUTING.md, every page of docs/ and bench/README.md.
func docFiles(t *testing.T) []string {
	t.Helper()
	pages, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	if len(pages) == 0 {
		t.Fatal("docs/ has no page")
	}
	files := []string{"README.md", "CONTRIBUTING.md", filepath.Join("bench", "README.md")}
	for _, p := range pages {
		rel, err := filepath.Rel(root, p)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, rel)
	}
	return files
}

// fenceLine matches the line that opens or closes a fenced code block, with
// its indentation (inside a list item) and its language.
var fenceLine = regexp.MustCompile("^( *)```(.*)$")

// codeBlock is a fenced code block of a Markdown file.
type codeBlock struct {
	lang string
	body string // the lines, with the fence's indentation removed
	line int    // the opening fence's line, from 1
}

// codeBlocks returns the fenced code blocks of a Markdown file, and the file
// with each block's lines blanked (so that links in code are not links).
func codeBlocks(src string) (blocks []codeBlock, prose []string) {
	lines := strings.Split(src, "\n")
	prose = make([]string, len(lines))
	var open *codeBlock
	var indent string
	for i, l := range lines {
		m := fenceLine.FindStringSubmatch(l)
		switch {
		case open == nil && m != nil:
			open, indent = &codeBlock{lang: strings.TrimSpace(m[2]), line: i + 1}, m[1]
		case open != nil && m != nil && m[2] == "":
			blocks = append(blocks, *open)
			open = nil
		case open != nil:
			open.body += strings.TrimPrefix(l, indent) + "\n"
		default:
			prose[i] = l
		}
	}
	return blocks, prose
}

// TestDocCodeBlocksHaveALanguage checks that every code block of the
// documentation says what it holds (sh, caddyfile, json, ini, text), so that
// no Caddyfile escapes TestREADMECaddyfiles in a block without a language.
func TestDocCodeBlocksHaveALanguage(t *testing.T) {
	for _, f := range docFiles(t) {
		src, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		blocks, _ := codeBlocks(string(src))
		for _, b := range blocks {
			if b.lang == "" {
				t.Errorf("%s:%d: a code block without a language (write ```sh, ```caddyfile, ```json, ```ini or ```text)", f, b.line)
			}
		}
	}
}

// TestDocLinks checks that every relative link of the documentation
// resolves: the file or folder it names exists, and its #fragment names a
// heading of that Markdown file (or of the page itself), as GitHub makes
// anchors from headings.
func TestDocLinks(t *testing.T) {
	links := 0
	for _, f := range docFiles(t) {
		errs, n := docLinkErrors(root, f)
		links += n
		for _, e := range errs {
			t.Error(e)
		}
	}
	if links < 50 {
		t.Errorf("the documentation has %d relative links; the link finder is broken", links)
	}
}

// TestDocLinkErrors checks docLinkErrors on a small tree of pages: each
// kind of broken link is reported with its file and line, and good links
// are not.
func TestDocLinkErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("docs/page.md", "# A page\n\n## Where goals fall short, and why\n\n## `cache <dir>...`\n\n## Twice\n\n## Twice\n")
	write("README.md", strings.Join([]string{
		"# Top",
		"[ok](docs/page.md) [ok](docs/page.md#where-goals-fall-short-and-why) [ok](docs/page.md#cache-dir)",
		"[ok](docs/page.md#twice-1) [ok](#top) [ok](docs/) [ok](https://example.com/x#y)",
		"`[in code](missing.md)`",
		"```sh",
		"[in a block](missing.md)",
		"```",
		"[missing file](docs/missing.md)",
		"[missing anchor](docs/page.md#no-such-heading)",
		"[missing anchor here](#nowhere)",
		"[twice too many](docs/page.md#twice-2)",
	}, "\n"))
	errs, n := docLinkErrors(dir, "README.md")
	if n != 10 {
		t.Errorf("found %d relative links, want 10", n)
	}
	want := []string{
		`README.md:8: link "docs/missing.md": no such file`,
		`README.md:9: link "docs/page.md#no-such-heading": docs/page.md has no heading with the anchor no-such-heading`,
		`README.md:10: link "#nowhere": README.md has no heading with the anchor nowhere`,
		`README.md:11: link "docs/page.md#twice-2": docs/page.md has no heading with the anchor twice-2`,
	}
	if strings.Join(errs, "\n") != strings.Join(want, "\n") {
		t.Errorf("docLinkErrors reports\n%s\nwant\n%s", strings.Join(errs, "\n"), strings.Join(want, "\n"))
	}
}

// mdLink matches an inline Markdown link or image, capturing its target.
var mdLink = regexp.MustCompile(`!?\[[^\]]*\]\(([^)\s]+)\)`)

// codeSpan matches an inline code span.
var codeSpan = regexp.MustCompile("`[^`]*`")

// docLinkErrors checks the relative links of the Markdown file f (relative
// to dir) and returns one message per broken link, and how many relative
// links it checked.
func docLinkErrors(dir, f string) (errs []string, links int) {
	src, err := os.ReadFile(filepath.Join(dir, f))
	if err != nil {
		return []string{err.Error()}, 0
	}
	_, prose := codeBlocks(string(src))
	for i, l := range prose {
		l = codeSpan.ReplaceAllString(l, "")
		for _, m := range mdLink.FindAllStringSubmatch(l, -1) {
			target := m[1]
			if regexp.MustCompile(`^[a-z][a-z0-9+.-]*:`).MatchString(target) {
				continue // https:, mailto:
			}
			links++
			file, frag, _ := strings.Cut(target, "#")
			page := f
			if file != "" {
				page = filepath.Join(filepath.Dir(f), filepath.FromSlash(file))
				if _, err := os.Stat(filepath.Join(dir, page)); err != nil {
					errs = append(errs, fmt.Sprintf("%s:%d: link %q: no such file", f, i+1, target))
					continue
				}
			}
			if frag == "" {
				continue
			}
			anchors, err := headingAnchors(filepath.Join(dir, page))
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s:%d: link %q: %v", f, i+1, target, err))
				continue
			}
			if !anchors[frag] {
				errs = append(errs, fmt.Sprintf("%s:%d: link %q: %s has no heading with the anchor %s", f, i+1, target, filepath.ToSlash(page), frag))
			}
		}
	}
	return errs, links
}

// heading matches an ATX heading.
var heading = regexp.MustCompile(`^#{1,6}\s+(.*?)\s*#*\s*$`)

// headingAnchors returns the anchors GitHub gives the headings of a
// Markdown file.
func headingAnchors(path string) (map[string]bool, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	_, prose := codeBlocks(string(src))
	anchors := map[string]bool{}
	seen := map[string]int{}
	for _, l := range prose {
		m := heading.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		slug := githubSlug(m[1])
		if n := seen[slug]; n > 0 {
			anchors[fmt.Sprintf("%s-%d", slug, n)] = true
		} else {
			anchors[slug] = true
		}
		seen[slug]++
	}
	return anchors, nil
}

// githubSlug is the anchor GitHub makes of a heading's text: links reduced
// to their text, lower case, every character but letters, digits, spaces,
// hyphens and underscores dropped, spaces turned into hyphens. (A repeated
// heading gets -1, -2, ...: see headingAnchors.)
func githubSlug(text string) string {
	text = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`).ReplaceAllString(text, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(text) {
		switch {
		case unicode.IsLetter(r), unicode.IsDigit(r), r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// TestDocTestNames checks that every test, benchmark and fuzz target the
// documentation names (as proof of a claim, or in a command to run) exists
// in some _test.go file of the module, so that a renamed test does not
// leave a command that runs nothing.
func TestDocTestNames(t *testing.T) {
	defined := map[string]bool{}
	def := regexp.MustCompile(`(?m)^func ((?:Test|Benchmark|Fuzz)[A-Z]\w*)\(`)
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range def.FindAllStringSubmatch(string(src), -1) {
			defined[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	named := regexp.MustCompile(`\b(?:Test|Benchmark|Fuzz)[A-Z]\w*`)
	for _, f := range docFiles(t) {
		src, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		for i, l := range strings.Split(string(src), "\n") {
			for _, name := range named.FindAllString(l, -1) {
				if !defined[name] {
					t.Errorf("%s:%d names %s, which no _test.go file defines", f, i+1, name)
				}
			}
		}
	}
}
