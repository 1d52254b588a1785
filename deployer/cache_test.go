package deployer

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// cacheBuild is a build that reads what the cache folder "gen" holds,
// publishes it, then appends its own commit to gen/log in place (>>, the
// way npm rewrites files in node_modules) and fails when the commit has a
// file named "fail". It also leaves a symlink that points outside the
// release in gen, and marks its cache home.
const cacheBuild = `
mkdir -p public gen
cat gen/log > public/seen.txt 2>/dev/null || : > public/seen.txt
if [ -L gen/outside ]; then readlink gen/outside > public/link.txt; else echo "no symlink" > public/link.txt; fi
cat "$XDG_CACHE_HOME/marker" > public/home.txt 2>/dev/null || echo "no marker" > public/home.txt
echo "$DEPLOY_COMMIT" >> gen/log
echo "$DEPLOY_COMMIT" > "$XDG_CACHE_HOME/marker"
ln -sfn /etc/hostname gen/outside
echo built > public/index.html
if [ -e fail ]; then echo "failing on purpose"; exit 1; fi
`

// TestCacheCarriesLastGoodBuild deploys four commits with cache gen. Each
// build sees what the last good build left in gen; the third fails after
// writing into gen, and the fourth sees the second's gen, not the failed
// one's. No build changes gen of a release before it, the live one
// included, though each appends to gen/log in place.
func TestCacheCarriesLastGoodBuild(t *testing.T) {
	r := newRemote(t)
	cfg := Config{Remote: r.bare, Publish: "public", Cache: []string{"gen"},
		Commands: [][]string{{"sh", "-c", cacheBuild}}}
	c1 := r.commit(map[string]string{"README.md": "one"})
	tg := start(t, cfg)
	path := tg.Status().Path
	s1 := tg.waitLive(c1)
	if got := readCurrent(t, path, "seen.txt"); got != "" {
		t.Errorf("the first build found gen/log = %q, want nothing: there is no earlier release", got)
	}

	c2 := r.commit(map[string]string{"README.md": "two"})
	tg.wake(ReasonManual)
	s2 := tg.waitLive(c2)
	if got := readCurrent(t, path, "seen.txt"); got != c1+"\n" {
		t.Errorf("the second build found gen/log = %q, want the first build's %q", got, c1+"\n")
	}
	if got := readCurrent(t, path, "link.txt"); got != "/etc/hostname\n" {
		t.Errorf("gen/outside in the second build: %q, want the symlink to /etc/hostname copied as a symlink", got)
	}
	if got := readCurrent(t, path, "home.txt"); got != c1+"\n" {
		t.Errorf("the cache home held %q, want the first build's marker", got)
	}
	liveLog := filepath.Join(path, "releases", s2.Live.Release, "gen", "log")
	liveBefore := readFile(t, liveLog)
	firstLog := readFile(t, filepath.Join(path, "releases", s1.Live.Release, "gen", "log"))

	c3 := r.commit(map[string]string{"README.md": "three", "fail": "yes"})
	tg.wake(ReasonManual)
	s3 := tg.waitResult("error", c3)
	if s3.Live.Commit != c2 {
		t.Fatalf("live after the failed build: %s, want %s", s3.Live.Commit, c2)
	}

	c4 := r.commit(map[string]string{"README.md": "four", "fail": "\x00delete"})
	tg.wake(ReasonManual)
	s4 := tg.waitLive(c4)
	if got, want := readCurrent(t, path, "seen.txt"), c1+"\n"+c2+"\n"; got != want {
		t.Errorf("the build after a failed one found gen/log = %q, want the last good build's %q (not the failed build's)", got, want)
	}
	if got := readFile(t, liveLog); got != liveBefore {
		t.Errorf("gen/log of release %s changed from %q to %q: later builds wrote into it", s2.Live.Release, liveBefore, got)
	}
	if got := readFile(t, filepath.Join(path, "releases", s1.Live.Release, "gen", "log")); got != firstLog {
		t.Errorf("gen/log of the first release changed from %q to %q", firstLog, got)
	}
	fi, err := os.Lstat(filepath.Join(path, "releases", s4.Live.Release, "gen", "outside"))
	if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("gen/outside in the new release: %v, %v; want a symlink", fi, err)
	}
	if log := readFile(t, s4.Last.Log); !strings.Contains(log, "cache: carried gen from "+s2.Live.Release) {
		t.Errorf("the build log does not say where the cache came from:\n%s", log)
	}
}

// TestCacheHome: commands get XDG_CACHE_HOME, npm_config_cache and
// HUGO_CACHEDIR in folders under <path>/cache that exist, but those that
// env sets (in any case, as npm reads them).
func TestCacheHome(t *testing.T) {
	r := newRemote(t)
	c1 := r.commit(map[string]string{"README.md": "one"})
	own := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", "/caddy/own/cache") // Caddy's environment: replaced
	tg := start(t, Config{Remote: r.bare, Env: []string{"NPM_CONFIG_CACHE=" + own},
		Commands: [][]string{{"sh", "-c", `for v in XDG_CACHE_HOME npm_config_cache NPM_CONFIG_CACHE HUGO_CACHEDIR; do
			eval "d=\${$v:-unset}"; echo "$v=$d"; [ "$d" = unset ] || [ -d "$d" ] || echo "$v is not a folder"; done > env.txt`}}})
	path := tg.Status().Path
	tg.waitLive(c1)
	want := "XDG_CACHE_HOME=" + filepath.Join(path, "cache", "xdg") + "\n" +
		"npm_config_cache=unset\n" +
		"NPM_CONFIG_CACHE=" + own + "\n" +
		"HUGO_CACHEDIR=" + filepath.Join(path, "cache", "hugo") + "\n"
	if got := readCurrent(t, path, "env.txt"); got != want {
		t.Errorf("the build's cache variables:\n%s\nwant:\n%s", got, want)
	}
}

// TestCacheValidate: a cache folder must be a folder inside the release, and
// the error names it; cache needs commands.
func TestCacheValidate(t *testing.T) {
	for _, tc := range []struct {
		cache    []string
		commands bool
		err      string
	}{
		{cache: []string{"node_modules", "resources/_gen/", "./.jekyll-cache", "a/../b"}, commands: true},
		{cache: []string{""}, commands: true, err: "cache folder is empty"},
		{cache: []string{"/var/cache"}, commands: true, err: `cache folder "/var/cache" must be relative to the release`},
		{cache: []string{"ok", "../shared"}, commands: true, err: `cache folder "../shared" climbs out of the release`},
		{cache: []string{"a/../../b"}, commands: true, err: `cache folder "a/../../b" climbs out of the release`},
		{cache: []string{"."}, commands: true, err: `cache folder "." is the release itself`},
		{cache: []string{"a/.."}, commands: true, err: `cache folder "a/.." is the release itself`},
		{cache: []string{".git"}, commands: true, err: `cache folder ".git" is inside .git`},
		{cache: []string{"sub/.GIT./x"}, commands: true, err: `cache folder "sub/.GIT./x" is inside .git`},
		{cache: []string{`a\b`}, commands: true, err: `cache folder "a\\b" holds a NUL or a backslash`},
		{cache: []string{"node_modules"}, err: `cache "node_modules" needs a command`},
	} {
		t.Run(strings.Join(tc.cache, ","), func(t *testing.T) {
			cfg := Config{Path: "/srv/site", Remote: "/srv/repo.git", Cache: tc.cache}
			if tc.commands {
				cfg.Commands = [][]string{{"make"}}
			}
			err := cfg.Validate()
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("Validate: %v, want none", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("Validate: %v, want %q", err, tc.err)
			}
		})
	}
}

// TestCarryCache copies cache folders between two releases on disk, each
// case with what the new release's checkout holds.
func TestCarryCache(t *testing.T) {
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	type tree map[string]string // path: content; "->target" is a symlink, "/" a folder
	for _, tc := range []struct {
		name    string
		src     tree
		dst     tree // the new release's checkout
		rel     string
		want    tree // in dst afterwards, beside what dst had
		absent  []string
		log     string
		outside bool // src or dst reach the outside folder through a symlink
	}{
		{
			name: "files, folders and symlinks",
			src: tree{"gen/a.txt": "a", "gen/sub/b.bin": "b\x00b", "gen/sub/empty/": "/", "gen/link": "->../../../../etc/passwd",
				"gen/abs": "->/etc/hostname"},
			rel:  "gen",
			want: tree{"gen/a.txt": "a", "gen/sub/b.bin": "b\x00b", "gen/sub/empty/": "/", "gen/link": "->../../../../etc/passwd", "gen/abs": "->/etc/hostname"},
			log:  "",
		},
		{
			name: "nested cache path, created in the new release",
			src:  tree{"resources/_gen/images/x.jpg": "jpeg"},
			rel:  "resources/_gen",
			want: tree{"resources/_gen/images/x.jpg": "jpeg"},
		},
		{
			name: "the checkout's files win",
			src:  tree{"gen/tracked": "from the build", "gen/built": "built", "gen/dir/f": "f", "gen/was-dir/f": "f"},
			dst:  tree{"gen/tracked": "from git", "gen/dir/g": "g", "gen/was-dir": "a file now"},
			rel:  "gen",
			want: tree{"gen/tracked": "from git", "gen/built": "built", "gen/dir/f": "f", "gen/dir/g": "g", "gen/was-dir": "a file now"},
		},
		{
			name:    "a cache folder that is a symlink is not followed",
			src:     tree{"gen": "->OUTSIDE"},
			rel:     "gen",
			absent:  []string{"gen"},
			log:     "not carried: in the last good release, gen is a symlink",
			outside: true,
		},
		{
			name:    "nor one under a symlink",
			src:     tree{"res": "->OUTSIDE"},
			rel:     "res/gen",
			absent:  []string{"res"},
			log:     "not carried: in the last good release, res is a symlink",
			outside: true,
		},
		{
			name:    "the new release's symlink is not written through",
			src:     tree{"res/gen/x": "x"},
			dst:     tree{"res": "->OUTSIDE"},
			rel:     "res/gen",
			want:    tree{"res": "->OUTSIDE"},
			log:     "not carried: in the new release, res is a symlink",
			outside: true,
		},
		{
			name:   "nothing to carry",
			src:    tree{"other": "x"},
			rel:    "gen",
			absent: []string{"gen"},
			log:    "not carried: in the last good release, there is no gen",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			src, dst, outside := filepath.Join(base, "src"), filepath.Join(base, "dst"), filepath.Join(base, "outside")
			for _, d := range []string{src, dst, outside} {
				os.Mkdir(d, 0o755)
			}
			os.WriteFile(filepath.Join(outside, "secret"), []byte("outside"), 0o600)
			write := func(root string, tr tree) {
				for p, v := range tr {
					full := filepath.Join(root, p)
					os.MkdirAll(filepath.Dir(full), 0o755)
					switch {
					case v == "/":
						os.MkdirAll(full, 0o755)
					case strings.HasPrefix(v, "->"):
						os.Symlink(strings.Replace(v[2:], "OUTSIDE", outside, 1), full)
					default:
						os.WriteFile(full, []byte(v), 0o640)
						os.Chtimes(full, mtime, mtime)
					}
				}
			}
			write(src, tc.src)
			write(dst, tc.dst)
			var log bytes.Buffer
			if _, err := carryCache(context.Background(), src, dst, tc.rel, &log); err != nil {
				t.Fatalf("carryCache: %v\n%s", err, log.String())
			}
			if !strings.Contains(log.String(), tc.log) {
				t.Errorf("log %q, want %q", log.String(), tc.log)
			}
			for p, v := range tc.want {
				full := filepath.Join(dst, p)
				fi, err := os.Lstat(full)
				if err != nil {
					t.Errorf("%s: %v", p, err)
					continue
				}
				switch {
				case v == "/":
					if !fi.IsDir() {
						t.Errorf("%s is %v, want a folder", p, fi.Mode())
					}
				case strings.HasPrefix(v, "->"):
					target, err := os.Readlink(full)
					if want := strings.Replace(v[2:], "OUTSIDE", outside, 1); err != nil || target != want {
						t.Errorf("%s: symlink to %q (%v), want to %q", p, target, err, want)
					}
				default:
					if got := readFile(t, full); got != v {
						t.Errorf("%s = %q, want %q", p, got, v)
					}
					if _, fromSrc := tc.src[p]; fromSrc && tc.dst[p] == "" {
						if fi.Mode().Perm() != 0o640 || !fi.ModTime().Equal(mtime) {
							t.Errorf("%s: mode %v, mtime %v; want 0640 and %v, as in the last release", p, fi.Mode().Perm(), fi.ModTime(), mtime)
						}
					}
				}
			}
			for _, p := range tc.absent {
				if _, err := os.Lstat(filepath.Join(dst, p)); err == nil {
					t.Errorf("%s exists in the new release", p)
				}
			}
			if tc.outside {
				entries, _ := os.ReadDir(outside)
				if len(entries) != 1 {
					t.Errorf("the folder outside holds %d entries, want only its secret: a carry wrote through a symlink", len(entries))
				}
				filepath.WalkDir(dst, func(p string, e fs.DirEntry, err error) error {
					if err == nil && e.Type().IsRegular() && readFile(t, p) == "outside" {
						t.Errorf("%s holds the outside folder's file: a symlink was followed", p)
					}
					return nil
				})
			}
		})
	}
}

// TestCarryCacheInPlaceWrite: a file carried into the new release is its
// own copy: writing into it in place leaves the last release's file as it
// was (a hard link would share the change).
func TestCarryCacheInPlaceWrite(t *testing.T) {
	base := t.TempDir()
	src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
	os.MkdirAll(filepath.Join(src, "node_modules", "pkg"), 0o755)
	os.Mkdir(dst, 0o755)
	orig := filepath.Join(src, "node_modules", "pkg", "package.json")
	os.WriteFile(orig, []byte(`{"version":"1"}`), 0o644)
	if _, err := carryCache(context.Background(), src, dst, "node_modules", &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dst, "node_modules", "pkg", "package.json"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("XXXXXXXXXX"), 0)
	f.Close()
	if got := readFile(t, orig); got != `{"version":"1"}` {
		t.Errorf("writing into the carried copy changed the last release's file to %q", got)
	}
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("reading %s: %v", p, err)
	}
	return string(b)
}

// TestCacheHugo builds a real Hugo site whose template resizes an image,
// with cache resources/_gen: the second build (after a content change)
// finds the resized image that the first made and does not make it again,
// so the file in the new release is the first build's, modification time
// and all.
func TestCacheHugo(t *testing.T) {
	if _, err := exec.LookPath("hugo"); err != nil {
		t.Skip("hugo is not installed; CI installs it: apt-get install hugo")
	}
	var img bytes.Buffer
	if err := png.Encode(&img, noise(240, 180)); err != nil {
		t.Fatal(err)
	}
	r := newRemote(t)
	c1 := r.commit(map[string]string{
		"hugo.toml":          "baseURL = \"http://example.com/\"\ndisableKinds = [\"taxonomy\", \"term\", \"RSS\", \"sitemap\", \"robotsTXT\", \"404\"]\n",
		"assets/photo.png":   img.String(),
		"content/_index.md":  "---\ntitle: one\n---\n",
		"layouts/index.html": `{{ $p := resources.Get "photo.png" }}{{ $s := $p.Resize "120x" }}<title>{{ .Title }}</title><img src="{{ $s.RelPermalink }}">` + "\n",
	})
	tg := start(t, Config{Remote: r.bare, Publish: "public", Cache: []string{"resources/_gen"},
		Commands: [][]string{{"hugo", "--quiet"}}})
	path := tg.Status().Path
	s1 := tg.waitLive(c1)
	c2 := r.commit(map[string]string{"content/_index.md": "---\ntitle: two\n---\n"})
	tg.wake(ReasonManual)
	s2 := tg.waitLive(c2)
	if got := readCurrent(t, path, "index.html"); !strings.Contains(got, "<title>two</title>") {
		t.Fatalf("live index.html %q, want the second version", got)
	}

	gen := func(release string) fs.FileInfo {
		t.Helper()
		m, _ := filepath.Glob(filepath.Join(path, "releases", release, "resources", "_gen", "images", "*_120x0_*"))
		if len(m) != 1 {
			t.Fatalf("release %s holds %q in resources/_gen/images, want one resized image", release, m)
		}
		fi, err := os.Stat(m[0])
		if err != nil {
			t.Fatal(err)
		}
		return fi
	}
	first, second := gen(s1.Live.Release), gen(s2.Live.Release)
	if !second.ModTime().Equal(first.ModTime()) {
		t.Errorf("the resized image of the second build is from %v, the first build's from %v: Hugo resized it again",
			second.ModTime(), first.ModTime())
	}
	if os.SameFile(first, second) {
		t.Errorf("the two releases share the resized image's inode: it must be a copy")
	}
}

// noise is an image of w×h pixels that do not compress.
func noise(w, h int) image.Image {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range img.Pix {
		img.Pix[i] = byte(rnd.Uint32())
	}
	return img
}

// BenchmarkCarryCache copies a cache folder as carryCache does, against
// hard-linking the same files (what the deployer does not do: a build
// writing in place would change the last release): a Hugo resources/_gen
// of 120 images of about 150 KB, and a node_modules of 5,000 files of about
// 5 KB in 500 folders.
//
//	go test -run '^$' -bench BenchmarkCarryCache -benchtime 5x ./deployer
func BenchmarkCarryCache(b *testing.B) {
	for _, tc := range []struct {
		name              string
		files, dirs, size int
	}{
		{"resources_gen", 120, 3, 150 << 10},
		{"node_modules", 5000, 500, 5 << 10},
	} {
		src := b.TempDir()
		rnd := rand.New(rand.NewPCG(1, 1))
		buf := make([]byte, 2*tc.size)
		for i := range buf {
			buf[i] = byte(rnd.Uint32())
		}
		for i := range tc.files {
			dir := filepath.Join(src, "c", fmt.Sprintf("d%03d", i%tc.dirs))
			os.MkdirAll(dir, 0o755)
			os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%05d", i)), buf[:tc.size/2+rnd.IntN(tc.size)], 0o644)
		}
		for _, how := range []string{"copy", "hardlink"} {
			b.Run(tc.name+"/"+how, func(b *testing.B) {
				for i := 0; b.Loop(); i++ {
					dst := filepath.Join(b.TempDir(), strconv.Itoa(i))
					os.Mkdir(dst, 0o755)
					if how == "copy" {
						if _, err := carryCache(context.Background(), src, dst, "c", io.Discard); err != nil {
							b.Fatal(err)
						}
						continue
					}
					filepath.WalkDir(filepath.Join(src, "c"), func(p string, e fs.DirEntry, err error) error {
						rel, _ := filepath.Rel(src, p)
						if e.IsDir() {
							return os.Mkdir(filepath.Join(dst, rel), 0o755)
						}
						return os.Link(p, filepath.Join(dst, rel))
					})
				}
			})
		}
	}
}
