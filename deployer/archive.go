package deployer

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
)

// archiveExt ends the storage key of a release's archive.
//
// The archive is a tar stream compressed with zstd (klauspost/compress,
// already in Caddy's module graph, pure Go): one value per release, which
// every storage module can hold (they store whole values, not trees); tar
// keeps what a file server shows, folders, symlinks, the executable bit and
// modification times (so that every node sends the same Last-Modified and
// ETag for the same file); zstd packs and unpacks at hundreds of MB/s, far
// faster than gzip at a similar ratio, so a node is not held up by its CPU.
const archiveExt = ".tar.zst"

// maxArchiveEntries and maxUnpacked bound what one archive may unpack to,
// whatever its compressed size says: storage is shared, and a broken or
// forged archive must not fill the disk.
const (
	maxArchiveEntries = 1 << 20
	maxUnpacked       = 16 << 30
)

// packTree writes the tree at dir (symlinks kept as links, never followed)
// as a zstd-compressed tar, entries in lexical order, names relative to dir.
// It returns the archive and its digest, "sha256:<hex>".
func packTree(dir string) ([]byte, string, error) {
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, "", fmt.Errorf("packing the release: %w", err)
	}
	tw := tar.NewWriter(zw)
	copyBuf := make([]byte, 64<<10)
	err = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if !safeGitPath(filepath.ToSlash(rel)) {
			// Every node would refuse it: fail here, on the builder,
			// with the name.
			return fmt.Errorf("%q is a name other nodes refuse to unpack (a .git look-alike, a backslash)", filepath.ToSlash(rel))
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		if !fi.Mode().IsRegular() && !fi.IsDir() && fi.Mode()&fs.ModeSymlink == 0 {
			return nil // sockets, fifos, devices: nothing a file server serves
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			hdr.Name += "/"
		}
		// Who owns the files on the builder means nothing on another node.
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
		hdr.Mode &= 0o777
		// PAX keeps the nanoseconds of the modification time (USTAR
		// rounds to the second): Caddy's ETag is made of them, so a
		// follower's ETag and Last-Modified equal the builder's only
		// with the time exact.
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.CopyBuffer(writerOnly{tw}, f, copyBuf); err != nil {
			return err
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, "", fmt.Errorf("packing the release: %w", err)
	}
	b := buf.Bytes()
	return b, digestOf(b), nil
}

// digestOf returns the SHA-256 of b as "sha256:<hex>".
func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// unpackTree unpacks archive into dir, which must not exist, through
// os.Root: every write stays inside dir whatever the archive says. Only
// folders, regular files and symlinks are accepted, each under a safe
// relative name (as git would write it: no "..", no ".git", no absolute
// path); the mode keeps only the permission bits. Symlinks are written as
// they are: the caller checks, as for any release, that none resolves
// outside. On error, dir is left for the caller to remove.
func unpackTree(archive []byte, dir string) error {
	zr, err := zstd.NewReader(bytes.NewReader(archive), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(64<<20))
	if err != nil {
		return fmt.Errorf("unpacking the archive: %w", err)
	}
	defer zr.Close()
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("unpacking the archive: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("unpacking the archive: %w", err)
	}
	defer root.Close()
	folders := rootFolders{root: root, open: map[string]*os.Root{}}
	defer folders.close()

	type stamp struct {
		name string
		at   time.Time
	}
	var dirs []stamp
	var total int64
	buf := make([]byte, 64<<10)
	tr := tar.NewReader(zr)
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("unpacking the archive: %w", err)
		}
		if n >= maxArchiveEntries {
			return fmt.Errorf("unpacking the archive: more than %d entries", maxArchiveEntries)
		}
		name := hdr.Name
		if hdr.Typeflag == tar.TypeDir && len(name) > 1 && name[len(name)-1] == '/' {
			name = name[:len(name)-1]
		}
		if !safeGitPath(name) {
			return fmt.Errorf("unpacking the archive: entry %q is not a safe relative path", hdr.Name)
		}
		perm := fs.FileMode(hdr.Mode) & 0o755
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return fmt.Errorf("unpacking %q: %w", name, err)
			}
			dirs = append(dirs, stamp{name, hdr.ModTime})
		case tar.TypeReg:
			if total += hdr.Size; total > maxUnpacked {
				return fmt.Errorf("unpacking the archive: more than %d bytes", int64(maxUnpacked))
			}
			in, base, err := folders.of(name)
			if err != nil {
				return fmt.Errorf("unpacking %q: %w", name, err)
			}
			f, err := in.OpenFile(base, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm|0o644)
			if err != nil {
				return fmt.Errorf("unpacking %q: %w", name, err)
			}
			_, err = io.CopyBuffer(writerOnly{f}, tr, buf) // tar stops at hdr.Size
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("unpacking %q: %w", name, err)
			}
			if err := in.Chtimes(base, hdr.ModTime, hdr.ModTime); err != nil {
				return fmt.Errorf("unpacking %q: %w", name, err)
			}
		case tar.TypeSymlink:
			if hdr.Linkname == "" || bytes.IndexByte([]byte(hdr.Linkname), 0) >= 0 {
				return fmt.Errorf("unpacking the archive: symlink %q has no valid target", name)
			}
			if err := root.Symlink(hdr.Linkname, name); err != nil {
				return fmt.Errorf("unpacking %q: %w", name, err)
			}
		default:
			return fmt.Errorf("unpacking the archive: entry %q is of type %q: only folders, files and symlinks are accepted", name, hdr.Typeflag)
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		root.Chtimes(dirs[i].name, dirs[i].at, dirs[i].at)
	}
	return nil
}

// writerOnly hides the ReadFrom of an *os.File or a tar.Writer, so that
// io.CopyBuffer uses the one buffer of a whole archive instead of
// allocating one per file.
type writerOnly struct{ io.Writer }

// rootFolders opens each folder of an archive once, inside root, so that a
// file is created with one openat(2) of its base name rather than a walk of
// its whole path. Entries come in lexical order: a folder's files follow
// each other.
type rootFolders struct {
	root *os.Root
	open map[string]*os.Root
}

// of returns the folder of name, opened inside root, and name's base.
func (r *rootFolders) of(name string) (*os.Root, string, error) {
	dir, base := path.Split(name)
	if dir == "" {
		return r.root, base, nil
	}
	if in, ok := r.open[dir]; ok {
		return in, base, nil
	}
	in, err := r.root.OpenRoot(strings.TrimSuffix(dir, "/"))
	if err != nil {
		return nil, "", err
	}
	r.open[dir] = in
	return in, base, nil
}

func (r *rootFolders) close() {
	for _, in := range r.open {
		in.Close()
	}
}
