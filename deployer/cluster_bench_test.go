package deployer

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

// BenchmarkArchive packs and unpacks the published tree of a 2,000-file
// site (20 folders), as the builder and each other node do, and reports the
// archive's size: pages as benchSite writes them (HTML that compresses
// well), and pages of 4 KiB of random base64 (the worst case for zstd):
//
//	go test -run '^$' -bench Archive -benchtime 20x ./deployer
func BenchmarkArchive(b *testing.B) {
	for _, kind := range []string{"html", "random4k"} {
		dir := filepath.Join(b.TempDir(), "pub")
		total := 0
		for i := 0; i < 2000; i++ {
			p := filepath.Join(dir, fmt.Sprintf("d%02d", i%20), fmt.Sprintf("page%04d.html", i))
			os.MkdirAll(filepath.Dir(p), 0o755)
			data := fmt.Sprintf("<html><body><h1>page %d</h1><p>%0200d</p></body></html>\n", i, i)
			if kind == "random4k" {
				raw := make([]byte, 3072)
				rand.Read(raw)
				data = base64.StdEncoding.EncodeToString(raw)
			}
			total += len(data)
			os.WriteFile(p, []byte(data), 0o644)
		}
		var packed bytes.Buffer
		unpacked, err := packTree(dir, &packed)
		if err != nil {
			b.Fatal(err)
		}
		data := packed.Bytes()
		b.Run(kind+"/pack", func(b *testing.B) {
			for b.Loop() {
				packed.Reset()
				if _, err := packTree(dir, &packed); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(data)), "archive-bytes")
			b.ReportMetric(float64(total), "site-bytes")
		})
		b.Run(kind+"/unpack", func(b *testing.B) {
			out := b.TempDir()
			n := 0
			for b.Loop() {
				n++
				dst := filepath.Join(out, fmt.Sprint(n))
				if err := unpackTree(bytes.NewReader(data), dst, unpackLimits{declared: unpacked, free: -1}); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				os.RemoveAll(dst)
				b.StartTimer()
			}
			b.ReportMetric(float64(len(data)), "archive-bytes")
		})
	}
}

// BenchmarkArchiveHeap packs a site of 64 incompressible files of 4 MiB
// (256 MiB) into a group's FileStorage, in parts, as the builder does, and
// unpacks it from there as a follower does, and reports the peak heap in
// use (HeapInuse, sampled every millisecond, above what it was before) of
// each:
//
//	go test -run '^$' -bench ArchiveHeap -benchtime 1x ./deployer
func BenchmarkArchiveHeap(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "pub")
	buf := make([]byte, 4<<20)
	for i := range 64 {
		rand.Read(buf)
		p := filepath.Join(dir, fmt.Sprintf("d%d", i%8), fmt.Sprintf("f%02d.bin", i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, buf, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	buf = nil
	ctx := context.Background()
	st := &certmagic.FileStorage{Path: filepath.Join(b.TempDir(), "storage")}
	cl := &Cluster{Name: "blog", Storage: st}
	var packPeak, unpackPeak uint64
	n := 0
	for b.Loop() {
		n++
		name := fmt.Sprintf("r%d", n)
		stop := heapPeak()
		pw := newPartWriter(archivePartSize, func(i int) string { return cl.partKey(name, i) },
			func(key string, value []byte) error { return st.Store(ctx, key, value) })
		unpacked, err := packTree(dir, pw)
		digest := ""
		if err == nil {
			digest, err = pw.close()
		}
		if err != nil {
			b.Fatal(err)
		}
		packPeak = max(packPeak, stop())

		stop = heapPeak()
		out := filepath.Join(b.TempDir(), name)
		pr := newPartsReader(pw.parts, func(key string) ([]byte, error) { return st.Load(ctx, key) })
		err = unpackTree(pr, out, unpackLimits{declared: unpacked, free: freeSpace(filepath.Dir(out))})
		if err == nil {
			err = pr.finish(digest, pw.n)
		}
		if err != nil {
			b.Fatal(err)
		}
		unpackPeak = max(unpackPeak, stop())
		b.StopTimer()
		os.RemoveAll(out)
		st.Delete(ctx, cl.archivesKey())
		b.StartTimer()
	}
	b.ReportMetric(float64(packPeak)/(1<<20), "pack-peak-heap-MiB")
	b.ReportMetric(float64(unpackPeak)/(1<<20), "unpack-peak-heap-MiB")
}

// countingStorage counts the calls a node makes to storage.
type countingStorage struct {
	Storage
	loads, lists, stores atomic.Int64
}

func (s *countingStorage) Load(ctx context.Context, key string) ([]byte, error) {
	s.loads.Add(1)
	return s.Storage.Load(ctx, key)
}

func (s *countingStorage) List(ctx context.Context, path string, recursive bool) ([]string, error) {
	s.lists.Add(1)
	return s.Storage.List(ctx, path, recursive)
}

func (s *countingStorage) Store(ctx context.Context, key string, value []byte) error {
	s.stores.Add(1)
	return s.Storage.Store(ctx, key, value)
}

// BenchmarkClusterWatch is one idle tick of the watch of a node of a
// converged group of three on FileStorage (what each node does every
// Cluster.Poll, 2 s by default), and reports the storage calls it makes:
// multiply by 30 for a minute at the default poll. live-every-tick is the
// tick as it was (watchGroup: live read at each), lease-every-tick the
// tick now (watchTick: the build lease read, live only when it moved).
//
//	go test -run '^$' -bench ClusterWatch -benchtime 300x ./deployer
func BenchmarkClusterWatch(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "storage")
	r := newRemote(b)
	tip := r.commit(map[string]string{"index.html": "v1"})
	var nodes []*target
	var counted *countingStorage
	for _, id := range []string{"a", "b", "c"} {
		var s Storage = &certmagic.FileStorage{Path: dir}
		if id == "a" {
			counted = &countingStorage{Storage: s}
			s = counted
		}
		// The loops do not tick: the benchmark calls the watch itself.
		nodes = append(nodes, start(b, Config{Path: filepath.Join(b.TempDir(), id), Remote: r.bare,
			Cluster: &Cluster{Name: "blog", Node: id, Storage: s, Poll: time.Hour}}))
	}
	for _, n := range nodes {
		n.waitLive(tip)
	}
	a := nodes[0]
	waitFor(b, "a sees the group converged", func() bool {
		a.watchGroup()
		cs := a.Status().Cluster
		return cs.Converged && len(cs.Nodes) == 3
	})
	a.watchTick() // the lease's first read sets what later ones compare with
	for _, tc := range []struct {
		name string
		tick func()
	}{
		{"live-every-tick", a.watchGroup},
		{"lease-every-tick", func() { a.watchTick() }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			counted.loads.Store(0)
			counted.lists.Store(0)
			counted.stores.Store(0)
			for b.Loop() {
				tc.tick()
			}
			n := float64(b.N)
			b.ReportMetric(float64(counted.loads.Load())/n, "loads/watch")
			b.ReportMetric(float64(counted.lists.Load())/n, "lists/watch")
			b.ReportMetric(float64(counted.stores.Load())/n, "stores/watch")
		})
	}
}
