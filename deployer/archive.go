package deployer

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
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
// already in Caddy's module graph, pure Go): tar keeps what a file server
// shows, folders, symlinks, the executable bit and modification times (so
// that every node sends the same Last-Modified and ETag for the same file);
// zstd packs and unpacks at hundreds of MB/s, far faster than gzip at a
// similar ratio, so a node is not held up by its CPU.
//
// Storage modules store whole values, not streams: the archive is stored in
// parts of at most archivePartSize bytes (part 0 under the archive's key,
// part i under key.i), each stored as soon as it is full, so that neither
// the builder nor a follower ever holds more than a part of it in memory.
// The live record lists the parts, each with its size and SHA-256, and the
// SHA-256 of the whole.
const archiveExt = ".tar.zst"

// maxArchiveEntries and maxUnpacked bound what one archive may unpack to,
// whatever its compressed size says: storage is shared, and a broken or
// forged archive must not fill the disk. A live record also says what its
// archive's files hold (GroupLive.Unpacked), which bounds it further.
const (
	maxArchiveEntries = 1 << 20
	maxUnpacked       = 16 << 30
)

// archivePartSize is the most bytes of an archive stored under one key: a
// builder holds one part in memory, a follower two or three (the one it
// reads, the next one loading meanwhile (see loadAhead), and one the
// garbage collector has not yet freed), with zstd's window
// for each (with 4 MiB parts, a 64 MiB site takes some 15 MiB of heap to
// pack, 20 MiB to unpack; 8 MiB parts take some 10 MiB more). Values of a
// few MiB suit every storage module that holds certificates.
// maxArchivePart is the largest part a follower accepts, and
// maxArchiveParts the most parts (an incompressible archive of maxUnpacked
// bytes, in parts of archivePartSize, and room to spare).
const (
	archivePartSize = 4 << 20
	maxArchivePart  = 64 << 20
	maxArchiveParts = 2 * maxUnpacked / archivePartSize
)

// archiveWindow is zstd's window when packing: it sets what the encoder
// and the decoder hold in memory (a window and a block, with
// WithLowerEncoderMem), and a site's files are mostly smaller. A follower
// accepts windows up to maxArchiveWindow, zstd's default (what archives were
// packed with before).
const (
	archiveWindow    = 4 << 20
	maxArchiveWindow = 8 << 20
)

// packTree writes the tree at dir (symlinks kept as links, never followed)
// to w as a zstd-compressed tar, entries in lexical order, names relative to
// dir, as it walks it: what it holds in memory does not grow with the tree.
// It returns the sum of the sizes of the tree's regular files.
func packTree(dir string, w io.Writer) (int64, error) {
	zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(archiveWindow), zstd.WithLowerEncoderMem(true))
	if err != nil {
		return 0, fmt.Errorf("packing the release: %w", err)
	}
	var unpacked int64
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
		unpacked += hdr.Size
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
		return 0, fmt.Errorf("packing the release: %w", err)
	}
	return unpacked, nil
}

// digestOf returns the SHA-256 of b as "sha256:<hex>".
func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ArchivePart is one stored part of a release's archive.
type ArchivePart struct {
	Key  string `json:"key"`
	Size int64  `json:"size"`
	// Digest is the part's SHA-256, as "sha256:<hex>".
	Digest string `json:"digest"`
}

// partWriter cuts what is written to it into parts of at most size bytes
// and stores each as soon as it is full, through store: it holds one part
// in memory, never the whole archive. It hashes the whole as it goes.
type partWriter struct {
	size  int
	key   func(i int) string
	store func(key string, value []byte) error
	buf   []byte
	whole hash.Hash
	n     int64
	parts []ArchivePart
	// err is the first error of store: packing stops at it.
	err error
}

func newPartWriter(size int, key func(int) string, store func(string, []byte) error) *partWriter {
	return &partWriter{size: size, key: key, store: store, whole: sha256.New()}
}

func (w *partWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if w.err != nil {
			return written, w.err
		}
		n := min(len(p), w.size-len(w.buf))
		if len(w.buf)+n > cap(w.buf) {
			// Grow to at most size: a small archive holds little.
			b := make([]byte, len(w.buf), min(w.size, max(2*cap(w.buf), len(w.buf)+n, 64<<10)))
			copy(b, w.buf)
			w.buf = b
		}
		w.buf = append(w.buf, p[:n]...)
		p, written = p[n:], written+n
		if len(w.buf) == w.size {
			w.flush()
		}
	}
	return written, w.err
}

// flush stores the part being filled. The buffer is reused for the next
// part once store returns: a Storage's Store, as certmagic's are, does not
// keep the value it was given.
func (w *partWriter) flush() {
	if w.err != nil || len(w.buf) == 0 {
		return
	}
	key := w.key(len(w.parts))
	if err := w.store(key, w.buf); err != nil {
		w.err = err
		return
	}
	w.whole.Write(w.buf)
	w.n += int64(len(w.buf))
	w.parts = append(w.parts, ArchivePart{Key: key, Size: int64(len(w.buf)), Digest: digestOf(w.buf)})
	w.buf = w.buf[:0]
}

// close stores the last part and returns the digest of the whole.
func (w *partWriter) close() (string, error) {
	w.flush()
	if w.err != nil {
		return "", w.err
	}
	return "sha256:" + hex.EncodeToString(w.whole.Sum(nil)), nil
}

// partsReader reads an archive's parts one after the other through load,
// each checked against its size and digest before any of its bytes is
// read: the unpacker never sees a byte that storage altered. finish then
// checks the whole.
type partsReader struct {
	parts []ArchivePart
	load  func(key string) ([]byte, error)
	next  int
	cur   []byte
	whole hash.Hash
	n     int64
	// err is the first error of load or of a part's check; load's
	// errors are returned as they are, and set loadFailed.
	err        error
	loadFailed bool
}

func newPartsReader(parts []ArchivePart, load func(string) ([]byte, error)) *partsReader {
	return &partsReader{parts: parts, load: load, whole: sha256.New()}
}

func (r *partsReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.next == len(r.parts) {
			return 0, io.EOF
		}
		part := r.parts[r.next]
		b, err := r.load(part.Key)
		if err != nil {
			r.err, r.loadFailed = err, true
			return 0, err
		}
		if got := digestOf(b); int64(len(b)) != part.Size || got != part.Digest {
			r.err = fmt.Errorf("part %s: its digest is %s (%d bytes), the group's live record says %s (%d bytes)",
				part.Key, got, len(b), part.Digest, part.Size)
			return 0, r.err
		}
		r.whole.Write(b)
		r.n += int64(len(b))
		r.cur = b
		r.next++
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	if len(r.cur) == 0 {
		r.cur = nil // not held while the next part loads
	}
	return n, nil
}

// finish reads what the unpacker left of the archive (past the tar's end)
// and checks that the whole is size bytes of the given digest.
func (r *partsReader) finish(digest string, size int64) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	if got := "sha256:" + hex.EncodeToString(r.whole.Sum(nil)); got != digest || r.n != size {
		return fmt.Errorf("its digest is %s (%d bytes), the group's live record says %s (%d bytes)", got, r.n, digest, size)
	}
	return nil
}

// unpackLimits bound what unpackTree writes.
type unpackLimits struct {
	// declared is what the live record says the archive's files hold;
	// zero when it does not say (a record written before it did).
	declared int64
	// free is what the file system of the release has free; negative
	// when unknown.
	free int64
}

// diskBlock is what a folder, or the tail of a file, takes on disk at
// least: the free-space check counts each file rounded up to it.
const diskBlock = 4096

// unpackTree unpacks the archive read from r into dir, which must not
// exist, through os.Root: every write stays inside dir whatever the archive
// says. Only folders, regular files and symlinks are accepted, each under a
// safe relative name (as git would write it: no "..", no ".git", no
// absolute path), written as every release's files are (objects.go): a
// file 0755 when its owner may execute it, else 0644 (no setuid, setgid or
// sticky bit), a folder 0755, whatever the umask; a symlink's target no
// longer than maxLinkTarget. Before a file is written, the sizes the headers
// declare so far are checked against what lim allows: a small archive
// that declares huge files is refused before it fills the disk. Symlinks
// are written as they are: the caller checks, as for any release, that none
// resolves outside. On error, dir is left for the caller to remove.
func unpackTree(r io.Reader, dir string, lim unpackLimits) error {
	limit := int64(maxUnpacked)
	if lim.declared > 0 {
		limit = min(limit, lim.declared)
	}
	if lim.free >= 0 && lim.declared > lim.free {
		return fmt.Errorf("unpacking the archive: its files hold %d bytes, the disk has %d free", lim.declared, lim.free)
	}
	zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(maxArchiveWindow),
		zstd.WithDecoderLowmem(true))
	if err != nil {
		return fmt.Errorf("unpacking the archive: %w", err)
	}
	defer zr.Close()
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("unpacking the archive: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
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
	var total, disk int64 // declared by the headers; and what it takes on disk, at least
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
		switch hdr.Typeflag {
		case tar.TypeDir:
			if disk += diskBlock; lim.free >= 0 && disk > lim.free {
				return fmt.Errorf("unpacking %q: the archive needs more than the %d bytes free on the disk", name, lim.free)
			}
			if err := makeDirs(root, name); err != nil {
				return fmt.Errorf("unpacking %q: %w", name, err)
			}
			dirs = append(dirs, stamp{name, hdr.ModTime})
		case tar.TypeReg:
			if hdr.Size < 0 || hdr.Size > limit-total {
				if lim.declared > 0 {
					return fmt.Errorf("unpacking %q: its header declares %d bytes, past the %d bytes the group's live record says the archive's files hold",
						name, hdr.Size, lim.declared)
				}
				return fmt.Errorf("unpacking %q: its header declares %d bytes, past the %d bytes an archive may hold", name, hdr.Size, limit)
			}
			total += hdr.Size
			if disk += (hdr.Size + diskBlock - 1) / diskBlock * diskBlock; lim.free >= 0 && disk > lim.free {
				return fmt.Errorf("unpacking %q: the archive needs more than the %d bytes free on the disk", name, lim.free)
			}
			in, base, err := folders.of(name)
			if err != nil {
				return fmt.Errorf("unpacking %q: %w", name, err)
			}
			// tar stops at hdr.Size.
			if err := writeFile(in, base, hdr.Mode&0o100 != 0, tr, buf, hdr.ModTime); err != nil {
				return fmt.Errorf("unpacking %q: %w", name, err)
			}
		case tar.TypeSymlink:
			if hdr.Linkname == "" || bytes.IndexByte([]byte(hdr.Linkname), 0) >= 0 {
				return fmt.Errorf("unpacking the archive: symlink %q has no valid target", name)
			}
			if err := writeLink(root, name, hdr.Linkname); err != nil {
				return fmt.Errorf("unpacking %q: %w", name, err)
			}
		default:
			return fmt.Errorf("unpacking the archive: entry %q is of type %q: only folders, files and symlinks are accepted", name, hdr.Typeflag)
		}
	}
	if lim.declared > 0 && total != lim.declared {
		return fmt.Errorf("unpacking the archive: its files hold %d bytes, the group's live record says %d", total, lim.declared)
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
