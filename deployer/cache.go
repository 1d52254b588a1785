package deployer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Build caches. Two kinds keep a build's work from one deploy to the next:
//
//   - Config.Cache names folders of the release (Hugo's resources/_gen,
//     node_modules, .jekyll-cache). Before the commands run, each is copied
//     from the last good release (the live one, or else the newest kept one)
//     into the new release. A copy, not hard links: a build may write into
//     files in place (npm does in node_modules), and through a hard link it
//     would change the file of the release it came from, the live site's
//     too when the folder is published. With copies, the releases on disk
//     keep what their build made, so a failed build (whose release is
//     removed) never changes what the next build finds: that is the last
//     good release's cache.
//   - the cache home, buildCacheName under Path, kept across deploys: the
//     commands get XDG_CACHE_HOME, npm_config_cache and HUGO_CACHEDIR in it
//     unless Config.Env sets them. These are the tools' own caches (npm's
//     content-addressed store, Hugo's file caches), which their tools write
//     so that an interrupted run leaves them usable; the deployer does not
//     copy them per build.

// buildCacheName is the folder under Path that holds the cache home.
const buildCacheName = "cache"

// cacheHomeVars are the variables that point tools at the cache home, and
// the folder of the cache home each gets.
var cacheHomeVars = []struct{ name, dir string }{
	{"XDG_CACHE_HOME", "xdg"},
	{"npm_config_cache", "npm"},
	{"HUGO_CACHEDIR", "hugo"},
}

// ValidateCache reports whether dir may be a cache folder: a relative path
// that names a folder inside the release, not the release itself, with no
// ".." and no ".git" component.
func ValidateCache(dir string) error {
	if dir == "" {
		return errors.New("cache folder is empty")
	}
	if filepath.IsAbs(dir) {
		return fmt.Errorf("cache folder %q must be relative to the release", dir)
	}
	if strings.ContainsAny(dir, "\x00\\") {
		return fmt.Errorf("cache folder %q holds a NUL or a backslash", dir)
	}
	clean := filepath.ToSlash(filepath.Clean(dir))
	if clean == "." {
		return fmt.Errorf("cache folder %q is the release itself: name a folder inside it", dir)
	}
	for c := range strings.SplitSeq(clean, "/") {
		switch {
		case c == "..":
			return fmt.Errorf("cache folder %q climbs out of the release", dir)
		case strings.EqualFold(strings.TrimRight(c, ". "), ".git"):
			return fmt.Errorf("cache folder %q is inside .git", dir)
		}
	}
	return nil
}

// validateCaches checks Config.Cache.
func (c Config) validateCaches() error {
	for _, dir := range c.Cache {
		if err := ValidateCache(dir); err != nil {
			return err
		}
	}
	if len(c.Cache) > 0 && len(c.Commands) == 0 {
		return fmt.Errorf("cache %q needs a command: without one no build writes into it", c.Cache[0])
	}
	return nil
}

// prepareCaches gets a build's caches ready before its commands run: it
// creates the cache home, and carries the cache folders into release dir
// from the last good release, saying what it did in the build log. It
// returns the variables that point the commands at the cache home. Without
// commands there is nothing to prepare.
func (d *Deployer) prepareCaches(ctx context.Context, cfg Config, dir string, log io.Writer) ([]string, error) {
	if len(cfg.Commands) == 0 {
		return nil, nil
	}
	env, err := cacheHome(cfg, d.path)
	if err != nil {
		return nil, err
	}
	if len(cfg.Cache) == 0 {
		return env, nil
	}
	from := d.cacheSource()
	src := filepath.Join(d.path, releasesName, from)
	if d.cacheSrc != nil {
		// A preview: a copy of the site's, never written back.
		src = d.cacheSrc()
		from = filepath.Base(src)
	}
	if from == "" || src == "" {
		fmt.Fprintf(log, "cache: no earlier release to carry %s from; the build starts cold\n", strings.Join(cfg.Cache, ", "))
		return env, nil
	}
	for _, c := range cfg.Cache {
		began := time.Now()
		n, err := carryCache(ctx, src, dir, filepath.Clean(c), log)
		if err != nil {
			return nil, fmt.Errorf("carrying cache folder %q from release %s: %w", c, from, err)
		}
		if n.skipped {
			continue
		}
		fmt.Fprintf(log, "cache: carried %s from %s (%d files, %s, in %v)\n",
			c, from, n.files, sizeString(n.bytes), time.Since(began).Round(time.Millisecond))
	}
	return env, nil
}

// cacheHome creates the cache home of path and returns the variables that
// point the commands at it, but those Config.Env sets (in any case: npm
// reads its variables case-insensitively).
func cacheHome(cfg Config, path string) ([]string, error) {
	set := map[string]bool{}
	for _, kv := range cfg.Env {
		k, _, _ := strings.Cut(kv, "=")
		set[strings.ToUpper(k)] = true
	}
	if err := os.MkdirAll(filepath.Join(path, buildCacheName), 0o700); err != nil {
		return nil, fmt.Errorf("creating the build cache home: %w", err)
	}
	var env []string
	for _, v := range cacheHomeVars {
		if set[strings.ToUpper(v.name)] {
			continue
		}
		dir := filepath.Join(path, buildCacheName, v.dir)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("creating the build cache home: %w", err)
		}
		env = append(env, v.name+"="+dir)
	}
	return env, nil
}

// cacheSource returns the release that cache folders come from: the live
// one if the state knows it, or else the newest release that it keeps, as
// long as its folder is there; "" when there is none.
func (d *Deployer) cacheSource() string {
	live := liveRelease(d.path)
	d.mu.Lock()
	candidates := make([]string, 0, len(d.st.Releases)+1)
	if live != "" && d.st.find(live) != nil {
		candidates = append(candidates, live)
	}
	for i := len(d.st.Releases) - 1; i >= 0; i-- {
		candidates = append(candidates, d.st.Releases[i].Name)
	}
	d.mu.Unlock()
	for _, name := range candidates {
		if fi, err := os.Lstat(filepath.Join(d.path, releasesName, name)); err == nil && fi.IsDir() {
			return name
		}
	}
	return ""
}

// carried counts what carryCache copied.
type carried struct {
	files   int
	bytes   int64
	skipped bool // the folder was not carried; the log says why
}

// carryCache copies folder rel of release src into release dst. What dst's
// checkout has there already stays: the commit's files win over the cache.
// Regular files are copied (their mode and modification time kept, so that
// tools comparing times with the sources see the output as old as it is),
// symlinks are copied as symlinks and never followed, other kinds of files
// are left out. Neither side's folder is followed through a symlink: a
// cache folder that is a symlink, or lies under one, is not carried, and
// every write goes through an os.Root of dst, so nothing outside dst is
// ever written. An entry of src that cannot be read is left out and
// named in log; a write that fails is an error.
func carryCache(ctx context.Context, src, dst, rel string, log io.Writer) (carried, error) {
	var n carried
	if why, _ := plainFolder(src, rel); why != "" {
		fmt.Fprintf(log, "cache: %s not carried: in the last good release, %s\n", rel, why)
		return carried{skipped: true}, nil
	}
	if why, missing := plainFolder(dst, rel); why != "" && !missing {
		fmt.Fprintf(log, "cache: %s not carried: in the new release, %s\n", rel, why)
		return carried{skipped: true}, nil
	}
	from, err := os.OpenRoot(filepath.Join(src, rel))
	if err != nil {
		fmt.Fprintf(log, "cache: %s not carried: %v\n", rel, err)
		return carried{skipped: true}, nil
	}
	defer from.Close()
	to, err := os.OpenRoot(dst)
	if err != nil {
		return n, err
	}
	defer to.Close()
	if err := to.MkdirAll(rel, 0o755); err != nil {
		return n, err
	}

	err = fs.WalkDir(from.FS(), ".", func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			fmt.Fprintf(log, "cache: left out %s: %v\n", filepath.Join(rel, p), err)
			if e != nil && e.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == "." {
			return nil
		}
		target := filepath.Join(rel, p)
		have, lerr := to.Lstat(target)
		exists := lerr == nil
		if lerr != nil && !errors.Is(lerr, fs.ErrNotExist) {
			return lerr
		}
		switch t := e.Type(); {
		case t.IsDir():
			if exists {
				if have.IsDir() {
					return nil // the checkout's folder: fill it in
				}
				return fs.SkipDir // the checkout has something else there
			}
			info, err := e.Info()
			if err != nil {
				return err
			}
			// Owner-writable, so that what it holds can be copied in.
			return to.Mkdir(target, info.Mode().Perm()|0o700)
		case exists:
			return nil // the checkout's file wins
		case t&fs.ModeSymlink != 0:
			link, err := from.Readlink(p)
			if err != nil {
				fmt.Fprintf(log, "cache: left out %s: %v\n", target, err)
				return nil
			}
			return to.Symlink(link, target)
		case t.IsRegular():
			size, err := copyCacheFile(from, to, p, target, log)
			if err == nil && size >= 0 {
				n.files++
				n.bytes += size
			}
			return err
		default:
			return nil // devices, sockets, pipes: not a cache's business
		}
	})
	return n, err
}

// copyCacheFile copies regular file p of from to target in to, with its
// mode and modification time. io.Copy between two files lets the kernel
// copy (copy_file_range: a reflink on file systems that share extents). A
// source that cannot be read is skipped (size -1).
func copyCacheFile(from, to *os.Root, p, target string, log io.Writer) (int64, error) {
	in, err := from.OpenFile(p, os.O_RDONLY, 0)
	if err != nil {
		fmt.Fprintf(log, "cache: left out %s: %v\n", target, err)
		return -1, nil
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil || !info.Mode().IsRegular() {
		fmt.Fprintf(log, "cache: left out %s: not a regular file\n", target)
		return -1, nil
	}
	out, err := to.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, info.Mode().Perm())
	if err != nil {
		return 0, err
	}
	size, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	mtime := info.ModTime()
	if err := to.Chtimes(target, time.Time{}, mtime); err != nil {
		return 0, err
	}
	return size, nil
}

// plainFolder says why rel is not a plain folder of release: "" when each
// of its components is a folder and none a symlink. missing says that the
// reason is a component that does not exist, below only plain folders.
func plainFolder(release, rel string) (why string, missing bool) {
	p := release
	for c := range strings.SplitSeq(filepath.ToSlash(rel), "/") {
		p = filepath.Join(p, c)
		fi, err := os.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return "there is no " + relTo(release, p), true
		case err != nil:
			return err.Error(), false
		case fi.Mode()&fs.ModeSymlink != 0:
			return relTo(release, p) + " is a symlink", false
		case !fi.IsDir():
			return relTo(release, p) + " is not a folder", false
		}
	}
	return "", false
}

func relTo(base, p string) string {
	r, err := filepath.Rel(base, p)
	if err != nil {
		return p
	}
	return r
}

// sizeString writes n bytes for a person: 512 B, 3.1 MiB.
func sizeString(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
