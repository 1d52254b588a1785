package deployer

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// heapPeak samples the heap in use (live and not yet swept objects, and the
// free room of the spans that hold them: runtime.MemStats.HeapInuse) every
// millisecond until the returned function is called, which returns the
// highest it saw above what it was at the start, after a GC.
func heapPeak() func() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}}
	read := func() uint64 {
		metrics.Read(s)
		return s[0].Value.Uint64() + s[1].Value.Uint64()
	}
	base := read()
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			peak = max(peak, read())
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
		}
	})
	return func() uint64 {
		close(done)
		wg.Wait()
		if peak < base {
			return 0
		}
		return peak - base
	}
}

// A node that builds a 64 MiB site of incompressible files stores its
// archive without holding it whole in memory (it used to: the archive, and
// the buffer it grew through, took more heap than the site's size), and a
// node that follows it does not load it whole either: each holds at most a
// part or two of 4 MiB at a time (a follower one more, loading ahead), with
// zstd's window.
func TestClusterArchiveMemory(t *testing.T) {
	const siteMiB = 64
	g := newGroup(t)
	c1 := g.remote.commit(map[string]string{"index.html": "v1"})
	config := func(id string) Config {
		cfg := g.config(id, filepath.Join(t.TempDir(), id))
		// 16 files of 4 MiB from /dev/urandom: zstd cannot shrink them.
		cfg.Commands = [][]string{{"sh", "-c", fmt.Sprintf(`od -An -tx1 -N16 /dev/urandom > stamp && i=0; while [ $i -lt %d ]; do
			head -c 4194304 /dev/urandom > "big$i.bin"; i=$((i+1)); done`, siteMiB/4)}}
		return cfg
	}
	stop := heapPeak()
	a := start(t, config("a"))
	a.waitLive(c1)
	built := stop()
	gl := g.live()
	if gl.Size < siteMiB<<20 {
		t.Fatalf("the archive holds %d bytes, want the site's %d MiB at least: the test needs an incompressible site", gl.Size, siteMiB)
	}

	stop = heapPeak()
	b := start(t, config("b"))
	stamp := g.waitServing(c1, a, b)
	followed := stop()
	if stamp == "" || g.buildCount() != 0 {
		t.Fatalf("stamp %q, %d builds: b did not follow a", stamp, g.buildCount())
	}
	t.Logf("a %d MiB site: peak heap %d MiB to build and store it, %d MiB to follow it", siteMiB, built>>20, followed>>20)
	// A follower holds one part more than a builder: the one that loads
	// while the one before it is unpacked (loadAhead).
	if limit := uint64(siteMiB<<20) / 2; built > limit || followed > limit+archivePartSize {
		t.Errorf("peak heap %d MiB to build and store, %d MiB to follow a %d MiB archive: want under %d and %d MiB",
			built>>20, followed>>20, gl.Size>>20, limit>>20, (limit+archivePartSize)>>20)
	}
}

// storeRecord stores gl as the group's live record, with the fields of
// extra set over its own, and data as its archive, one value at gl.Archive.
func (g *sharedGroup) storeRecord(gl *liveRecord, data []byte, extra map[string]any) {
	g.t.Helper()
	ctx := context.Background()
	if err := g.storage.Store(ctx, gl.Archive, data); err != nil {
		g.t.Fatal(err)
	}
	b, _ := json.Marshal(gl)
	var m map[string]any
	json.Unmarshal(b, &m)
	for k, v := range extra {
		m[k] = v
	}
	b, _ = json.Marshal(m)
	if err := g.storage.Store(ctx, "github_webhook/clusters/blog/live", b); err != nil {
		g.t.Fatal(err)
	}
	g.markMoved(gl.Node)
}

// zeroBomb is a zstd-compressed tar of one file, name, of size zero bytes:
// a few KiB that unpack to size bytes.
func zeroBomb(t *testing.T, name string, size int64) []byte {
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size}); err != nil {
		t.Fatal(err)
	}
	zeros := make([]byte, 1<<20)
	for n := int64(0); n < size; n += int64(len(zeros)) {
		tw.Write(zeros[:min(int64(len(zeros)), size-n)])
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	return buf.Bytes()
}

// The group's live record says what the archive's files hold: an archive
// whose headers declare more (here a file of 64 MiB of zeros, some KiB
// compressed, where the record says 4 KiB) is refused at that header, before
// the file is created, with an error that names it and both sizes; the
// node keeps serving what it served. It used to unpack it whole, and serve
// it.
func TestClusterRefusesArchiveBomb(t *testing.T) {
	g := newGroup(t)
	c1 := g.remote.commit(map[string]string{"index.html": "v1"})
	a := g.node("a")
	stamp := g.waitServing(c1, a)

	data := zeroBomb(t, "big.bin", 64<<20)
	gl := &liveRecord{Commit: strings.Repeat("f", 40), Release: "20300101T000000Z-ffffffffffff", Digest: digestOf(data),
		Size: int64(len(data)), Node: "mallory", At: time.Now()}
	gl.Archive = "github_webhook/clusters/blog/archives/" + gl.Release + ".tar.zst"
	g.storeRecord(gl, data, map[string]any{"unpacked": 4096})

	var cs *ClusterStatus
	waitFor(t, "the archive refused", func() bool {
		cs = a.Status().Cluster
		return cs.Live != nil && cs.Live.Release == gl.Release && cs.Error != "" || liveRelease(a.path) == gl.Release
	})
	if want := `unpacking "big.bin": its header declares 67108864 bytes, past the 4096 bytes the group's live record says`; !strings.Contains(cs.Error, want) {
		t.Errorf("cluster error %q, want it to say %q", cs.Error, want)
	}
	if got := readCurrent(t, a.path, "stamp"); got != stamp {
		t.Errorf("serves %q after a refused archive", got)
	}
	if _, err := os.Lstat(filepath.Join(a.path, "releases", gl.Release)); err == nil {
		t.Error("the refused release was left on disk")
	}
}

// unpackTree refuses, before it writes them, files that the disk has no
// room for: when the record says how much its files hold, before it
// creates the release's folder; when it does not (a record written before
// it said), at the first header past what is free.
func TestUnpackTreeChecksFreeSpace(t *testing.T) {
	data := zeroBomb(t, "big.bin", 2<<20)
	out := filepath.Join(t.TempDir(), "out")
	err := unpackTree(bytes.NewReader(data), out, unpackLimits{declared: 2 << 20, free: 1 << 20})
	if want := "its files hold 2097152 bytes, the disk has 1048576 free"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("unpacking 2 MiB where 1 MiB is free: %v, want %q", err, want)
	}
	if _, err := os.Lstat(out); err == nil {
		t.Error("the release's folder was made all the same")
	}
	err = unpackTree(bytes.NewReader(data), out, unpackLimits{free: 1 << 20})
	if want := `unpacking "big.bin": the archive needs more than the 1048576 bytes free on the disk`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("unpacking 2 MiB where 1 MiB is free, its size unknown: %v, want %q", err, want)
	}
	if _, err := os.Lstat(filepath.Join(out, "big.bin")); err == nil {
		t.Error("big.bin was written all the same")
	}
	os.RemoveAll(out)
	if err := unpackTree(bytes.NewReader(data), out, unpackLimits{declared: 2 << 20, free: freeSpace(filepath.Dir(out))}); err != nil {
		t.Errorf("unpacking 2 MiB on this disk: %v", err)
	}
}

// The builder stores a site's archive in parts (here of 64 KiB, a few of
// them): one part altered in storage fails its digest on a node that
// follows, which says which part, keeps serving what it served, and leaves
// nothing of the release on disk.
func TestClusterTamperedPart(t *testing.T) {
	g := newGroup(t)
	config := func(id, path string) Config {
		cfg := g.config(id, path)
		cfg.Commands = [][]string{{"sh", "-c", `od -An -tx1 -N16 /dev/urandom > stamp && head -c 300000 /dev/urandom > big.bin`}}
		return cfg
	}
	c1 := g.remote.commit(map[string]string{"index.html": "v1"})
	a := start(t, config("a", filepath.Join(t.TempDir(), "a")), withPartSize(64<<10))
	bPath := filepath.Join(t.TempDir(), "b")
	b := start(t, config("b", bPath), withPartSize(64<<10))
	stamp := g.waitServing(c1, a, b)
	b.close()

	c2 := g.remote.commit(map[string]string{"index.html": "v2"})
	if got := a.wake(ReasonDelivery); got.Outcome != OutcomeDeployed || got.Commit != c2 {
		t.Fatalf("a's deploy of c2: %+v", got)
	}
	gl := g.live()
	part := filepath.Join(g.dir, filepath.FromSlash(gl.Archive)+".2")
	orig, err := os.ReadFile(part)
	if err != nil {
		t.Fatalf("part 2 of c2's archive: %v", err)
	}
	bad := append([]byte(nil), orig...)
	bad[len(bad)/2] ^= 0xff
	if err := os.WriteFile(part, bad, 0o644); err != nil {
		t.Fatal(err)
	}

	b = start(t, config("b", bPath), withPartSize(64<<10))
	var cs *ClusterStatus
	waitFor(t, "b to refuse c2's archive", func() bool {
		cs = b.Status().Cluster
		return cs.Live != nil && cs.Live.Commit == c2 && cs.Error != "" || liveRelease(bPath) == gl.Release
	})
	if want := "part " + gl.Archive + ".2: its digest is"; !strings.Contains(cs.Error, want) || !strings.Contains(cs.Error, "refused") {
		t.Errorf("b's cluster error %q, want it to say %q", cs.Error, want)
	}
	if got := readCurrent(t, bPath, "stamp"); got != stamp {
		t.Errorf("b serves %q with a part of c2's archive altered, want c1's %q", got, stamp)
	}
	if _, err := os.Lstat(filepath.Join(bPath, "releases", gl.Release)); err == nil {
		t.Error("b left the refused release on disk")
	}
}

// An archive stored in parts reads back whole, part by part; a record
// whose parts match but whose digest of the whole does not (a record
// altered after its parts were written) fails in finish, after the
// unpacker has read everything, so that the caller removes what it
// unpacked before anything goes live.
func TestArchiveParts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pub")
	os.MkdirAll(dir, 0o755)
	for i := range 5 {
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", i)), bytes.Repeat([]byte(fmt.Sprint(i, "abcdefgh")), 20000), 0o644)
	}
	g := newGroup(t)
	ctx := context.Background()
	cl := &Cluster{Name: "blog", Storage: g.storage}
	pw := newPartWriter(1000, func(i int) string { return cl.partKey("r1", i) },
		func(key string, value []byte) error { return g.storage.Store(ctx, key, value) })
	unpacked, err := packTree(dir, pw)
	digest := ""
	if err == nil {
		digest, err = pw.close()
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(pw.parts) < 3 || pw.parts[1].Key != cl.archiveKey("r1")+".1" || unpacked != 5*9*20000 {
		t.Fatalf("parts %+v, unpacked %d", pw.parts, unpacked)
	}
	load := func(key string) ([]byte, error) { return g.storage.Load(ctx, key) }
	for _, tc := range []struct {
		digest string
		want   string
	}{
		{digest, ""},
		{"sha256:" + strings.Repeat("0", 64), "its digest is " + digest},
	} {
		out := filepath.Join(t.TempDir(), "out")
		pr := newPartsReader(pw.parts, load)
		err := unpackTree(pr, out, unpackLimits{declared: unpacked, free: -1})
		if err == nil {
			err = pr.finish(tc.digest, pw.n)
		}
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("whole digest %s: %v, want %q", tc.digest, err, tc.want)
		}
	}
}
