package deployer

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// benchSite builds a remote with files files and commits commits quickly,
// through git fast-import, and a work clone to push one-file changes from.
func benchSite(b testing.TB, files, commits int) *remote {
	b.Helper()
	r := newRemote(b)
	cmd := exec.Command("git", "fast-import", "--quiet")
	cmd.Dir = r.bare
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(in)
	blob := func(mark int, data string) {
		fmt.Fprintf(w, "blob\nmark :%d\ndata %d\n%s\n", mark, len(data), data)
	}
	for i := 0; i < files; i++ {
		blob(i+1, fmt.Sprintf("<html><body><h1>page %d</h1><p>%0200d</p></body></html>\n", i, i))
	}
	when := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	for c := 0; c < commits; c++ {
		fmt.Fprintf(w, "commit refs/heads/main\ncommitter Bench <b@example.com> %d +0000\ndata 8\ncommit %d\n", when+int64(c), c%10)
		if c == 0 {
			for i := 0; i < files; i++ {
				fmt.Fprintf(w, "M 100644 :%d site/page%04d.html\n", i+1, i)
			}
		} else {
			data := fmt.Sprintf("revision %d\n", c)
			fmt.Fprintf(w, "M 100644 inline site/page%04d.html\ndata %d\n%s\n", c%files, len(data), data)
		}
	}
	w.WriteString("done\n")
	w.Flush()
	in.Close()
	if err := cmd.Wait(); err != nil {
		b.Fatal(err)
	}
	// fast-import writes loose packs; repack as GitHub would serve it.
	mustGit(b, r.bare, "repack", "-adq")
	os.RemoveAll(r.work)
	mustGit(b, filepath.Dir(r.work), "clone", "--quiet", "--depth=1", "file://"+r.bare, r.work)
	return r
}

// BenchmarkDeployVsClone measures delivery-to-live for a one-file change to a
// site of 2,000 files without a build command, for histories of 50, 500 and
// 5,000 commits, against the baseline: a fresh `git clone --depth 1` of the
// same repository from the same remote. Each iteration does both, back to
// back, so that the machine's load falls on both alike; it reports the
// median of each and their ratio:
//
//	go test -run '^$' -bench DeployVsClone -benchtime 15x ./deployer
func BenchmarkDeployVsClone(b *testing.B) {
	for _, commits := range []int{50, 500, 5000} {
		b.Run("commits="+strconv.Itoa(commits), func(b *testing.B) {
			r := benchSite(b, 2000, commits)
			d, done := startBenchDeployer(b, r)
			clones := b.TempDir()
			var deploys, cloneTimes []time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				r.commit(map[string]string{"site/page0001.html": "change " + strconv.Itoa(i)})
				b.StartTimer()
				begin := time.Now()
				d.Wake(ReasonDelivery)
				if e := <-done; e.Kind != EventSucceeded {
					b.Fatalf("deploy: %v", e.Err)
				}
				deploys = append(deploys, time.Since(begin))
				b.StopTimer()
				begin = time.Now()
				mustGit(b, clones, "clone", "--quiet", "--depth=1", "file://"+r.bare, "c"+strconv.Itoa(i))
				cloneTimes = append(cloneTimes, time.Since(begin))
				b.StartTimer()
			}
			dm, cm := median(deploys), median(cloneTimes)
			b.ReportMetric(float64(dm.Microseconds())/1000, "deploy-ms")
			b.ReportMetric(float64(cm.Microseconds())/1000, "clone-ms")
			b.ReportMetric(float64(dm)/float64(cm), "deploy/clone")
		})
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkSyncOneFileChange compares the two ways publish could put a
// release on disk after a one-file change made by reusing the spare:
// syncfs(2) of the whole file system (which also flushes whatever else is
// dirty there), and syncMade, fsync of the file written and the folders
// whose entries changed, which publish uses. In the "busy" cases another
// writer on the same file system leaves data dirty before each deploy: one
// file of 16 MiB (a log, a build's output), or a fresh checkout of 20,000
// files of 2 KiB (another site's deploy):
//
//	go test -run '^$' -bench SyncOneFileChange -benchtime 10x ./deployer
func BenchmarkSyncOneFileChange(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "releases", "r")
	for i := 0; i < 2000; i++ {
		p := filepath.Join(dir, "pages", fmt.Sprintf("d%02d", i%20), fmt.Sprintf("page%04d.html", i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("x"), 0o644)
	}
	if err := syncTree(dir); err != nil {
		b.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer root.Close()
	made := &madeRelease{files: []string{"pages/d01/page0001.html"}, dirs: []string{".", "pages", "pages/d01"}}
	other := b.TempDir()
	junk := make([]byte, 16<<20)
	page := make([]byte, 2<<10)
	bigFile := func() { os.WriteFile(filepath.Join(other, "big"), junk, 0o644) }
	checkout := func() {
		co := filepath.Join(other, "checkout")
		os.RemoveAll(co)
		syncTree(other) // the removal is not what is measured
		for i := 0; i < 20000; i++ {
			if i%1000 == 0 {
				os.MkdirAll(filepath.Join(co, fmt.Sprint(i/1000)), 0o755)
			}
			os.WriteFile(filepath.Join(co, fmt.Sprint(i/1000), fmt.Sprint(i)), page, 0o644)
		}
	}
	for _, tc := range []struct {
		name  string
		dirty func()
		sync  func() error
	}{
		{"syncfs", nil, func() error { return syncTree(dir) }},
		{"fsync-written", nil, func() error { return syncMade(dir, made) }},
		{"busy-16MiB/syncfs", bigFile, func() error { return syncTree(dir) }},
		{"busy-16MiB/fsync-written", bigFile, func() error { return syncMade(dir, made) }},
		{"busy-20000-files/syncfs", checkout, func() error { return syncTree(dir) }},
		{"busy-20000-files/fsync-written", checkout, func() error { return syncMade(dir, made) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				if tc.dirty != nil {
					b.StopTimer()
					tc.dirty()
					b.StartTimer()
				}
				i++
				name := filepath.FromSlash(made.files[0])
				if err := writeObject(root, name, "100644", strings.NewReader(fmt.Sprint("version ", i))); err != nil {
					b.Fatal(err)
				}
				if err := tc.sync(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOneFileChange measures a one-file change without a build on a
// flat site (every page in one folder, so the change rewrites one large
// tree object) of 2,000 and of 20,000 files: each deploy after the warm-up
// reuses the spare release. It reports the median time from the wake to
// the deploy's success event:
//
//	go test -run '^$' -bench '^BenchmarkOneFileChange$' -benchtime 10x ./deployer
func BenchmarkOneFileChange(b *testing.B) {
	for _, files := range []int{2000, 20000} {
		b.Run("files="+strconv.Itoa(files), func(b *testing.B) {
			r := benchSite(b, files, 2)
			d, done := startBenchDeployer(b, r)
			deploy := func(i int) time.Duration {
				r.commit(map[string]string{fmt.Sprintf("site/page%04d.html", 1+i%(files-1)): "change " + strconv.Itoa(i)})
				begin := time.Now()
				d.Wake(ReasonDelivery)
				if e := <-done; e.Kind != EventSucceeded {
					b.Fatalf("deploy: %v", e.Err)
				}
				return time.Since(begin)
			}
			for i := range 4 { // until a spare is there to reuse
				deploy(1000 + i)
			}
			var times []time.Duration
			i := 0
			for b.Loop() {
				i++
				times = append(times, deploy(i))
			}
			b.ReportMetric(float64(median(times).Microseconds())/1000, "deploy-ms")
		})
	}
}

// startBenchDeployer starts a deployer of r's site (no build, depth 1) that
// stops with b, waits for its first deploy, and returns it with the
// channel that receives the end of each later deploy.
func startBenchDeployer(b *testing.B, r *remote) (*Deployer, chan Event) {
	b.Helper()
	done := make(chan Event, 16)
	notify := func(e Event) {
		if e.Kind != EventStarted {
			done <- e
		}
	}
	d, err := New(Config{Path: filepath.Join(b.TempDir(), "site"), Remote: "file://" + r.bare, Depth: DefaultDepth, Notify: notify}, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := d.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup((&target{Deployer: d, t: b}).close)
	if e := <-done; e.Kind != EventSucceeded {
		b.Fatalf("first deploy: %v", e.Err)
	}
	return d, done
}
