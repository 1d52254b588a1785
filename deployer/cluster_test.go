package deployer

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/klauspost/compress/zstd"
	"go.uber.org/goleak"
)

// group is the shared storage of a test's nodes: certmagic's FileStorage,
// what Caddy's `storage file_system` is, on a folder of the test.
type sharedGroup struct {
	t       *testing.T
	dir     string
	storage *certmagic.FileStorage
	remote  *remote
	builds  string // every build appends a line to it
}

func newGroup(t *testing.T) *sharedGroup {
	dir := filepath.Join(t.TempDir(), "storage")
	return &sharedGroup{t: t, dir: dir, storage: &certmagic.FileStorage{Path: dir}, remote: newRemote(t),
		builds: filepath.Join(t.TempDir(), "builds")}
}

// config is the target of node id on path: a build writes 16 random
// bytes into stamp, so that two builds of one commit never serve the same
// bytes, and counts itself in g.builds, outside every release.
func (g *sharedGroup) config(id, path string) Config {
	return Config{
		Path:     path,
		Remote:   g.remote.bare,
		Keep:     3,
		Commands: [][]string{{"sh", "-c", `od -An -tx1 -N16 /dev/urandom > stamp && echo "$DEPLOY_COMMIT" >> "$1"`, "sh", g.builds}},
		Cluster:  &Cluster{Name: "blog", Node: id, Host: "host-" + id, Storage: g.storage, Poll: 20 * time.Millisecond},
	}
}

// unstarted returns a Deployer of node id that was made but not started,
// for tests that call its internals, and its config; it is closed when
// the test ends.
func (g *sharedGroup) unstarted(id string) (*Deployer, Config) {
	cfg := g.config(id, filepath.Join(g.t.TempDir(), id))
	d, err := New(cfg, nil)
	if err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(func() { d.Close(context.Background()) })
	return d, cfg
}

func (g *sharedGroup) node(id string) *target {
	return start(g.t, g.config(id, filepath.Join(g.t.TempDir(), id)))
}

// buildCount is how many builds ran in the whole group.
func (g *sharedGroup) buildCount() int {
	b, err := os.ReadFile(g.builds)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		g.t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

func (g *sharedGroup) live() *liveRecord {
	b, err := g.storage.Load(context.Background(), "github_webhook/clusters/blog/live")
	if err != nil {
		g.t.Fatalf("reading the group's live record: %v", err)
	}
	var gl liveRecord
	if err := json.Unmarshal(b, &gl); err != nil {
		g.t.Fatal(err)
	}
	return &gl
}

// waitServing waits until every node serves commit with no deploy running,
// and returns the bytes of stamp they serve, which must be the same.
func (g *sharedGroup) waitServing(commit string, nodes ...*target) string {
	g.t.Helper()
	stamp := ""
	for _, n := range nodes {
		n.waitLive(commit)
		got := readCurrent(g.t, n.path, "stamp")
		if stamp == "" {
			stamp = got
		} else if got != stamp {
			g.t.Errorf("%s serves stamp %q, another node %q: not the bytes of one build", n.path, got, stamp)
		}
	}
	return stamp
}

// waitConverged waits until n's status shows the group converged with
// want nodes.
func waitConverged(t *testing.T, n *target, want int) *ClusterStatus {
	t.Helper()
	var cs *ClusterStatus
	waitFor(t, "the group converged in "+n.path+"'s status", func() bool {
		cs = n.Status().Cluster
		return cs != nil && cs.Converged && len(cs.Nodes) == want && cs.Error == ""
	})
	return cs
}

// One build per commit in the group; every node serves its bytes; a
// rollback through another node moves them all and start-up or poll does
// not rebuild what was rolled back from; a node that was down converges
// without building.
func TestClusterBuildsOnceAndEveryNodeServesIt(t *testing.T) {
	g := newGroup(t)
	c1 := g.remote.commit(map[string]string{"index.html": "v1"})
	a, b, c := g.node("a"), g.node("b"), g.node("c")

	// All three wake at start-up: one builds, the others follow.
	stamp1 := g.waitServing(c1, a, b, c)
	if n := g.buildCount(); n != 1 {
		t.Fatalf("%d builds of one commit in the group, want 1", n)
	}
	followed := 0
	for _, n := range []*target{a, b, c} {
		if l := n.Status().Last; l.Reason == ReasonGroup && l.Result == "ok" {
			followed++
		}
	}
	if followed != 2 {
		t.Errorf("%d nodes show last reason %q, want the 2 that did not build", followed, ReasonGroup)
	}
	cs := waitConverged(t, a, 3)
	if cs.Live.Commit != c1 || !strings.HasPrefix(cs.Live.Digest, "sha256:") || cs.Behind != 0 {
		t.Errorf("a's cluster status %+v", cs)
	}

	// A delivery to a: a builds; b and c follow on their watch alone.
	c2 := g.remote.commit(map[string]string{"index.html": "v2"})
	if got := a.wake(ReasonDelivery); got.Outcome != OutcomeDeployed {
		t.Fatalf("a's delivery: %+v", got)
	}
	stamp2 := g.waitServing(c2, a, b, c)
	if stamp2 == stamp1 {
		t.Fatal("the second build served the first's bytes")
	}
	if n := g.buildCount(); n != 2 {
		t.Fatalf("%d builds for two commits, want 2", n)
	}
	if got := b.Status().Checked; got.Outcome != OutcomeFollowed || got.Reason != ReasonGroup {
		t.Errorf("b's last check %+v, want followed", got)
	}
	if n := b.events.count(EventFollowed) + a.events.count(EventFollowed) + c.events.count(EventFollowed); n != 4 {
		t.Errorf("the nodes notified %d follows, want 4: two nodes for each of two commits", n)
	}

	// Rollback through b: the group goes back to c1's release, pinned.
	live, err := b.Rollback(t.Context(), "")
	if err != nil {
		t.Fatalf("rollback through b: %v", err)
	}
	if live.Commit != c1 {
		t.Fatalf("rolled back to %+v", live)
	}
	if gl := g.live(); gl.Commit != c1 || gl.PinnedFrom != c2 || gl.Node != "b" {
		t.Fatalf("group live after rollback %+v", gl)
	}
	if got := g.waitServing(c1, a, b, c); got != stamp1 {
		t.Errorf("after rollback the group serves %q, want the first build's %q", got, stamp1)
	}
	for _, n := range []*target{a, c} {
		if got := wakeFor(n, ReasonPoll); got.Outcome != OutcomeWaiting || got.Detail != "rolled back from" {
			t.Errorf("poll on %s after the rollback: %+v", n.path, got)
		}
	}
	if n := g.buildCount(); n != 2 {
		t.Fatalf("poll rebuilt the commit rolled back from: %d builds", n)
	}

	// c goes down; a new commit goes live on a and b; c, started again,
	// serves its last release at once, then follows without building.
	c.close()
	c3 := g.remote.commit(map[string]string{"index.html": "v3"})
	if got := a.wake(ReasonDelivery); got.Outcome != OutcomeDeployed {
		t.Fatalf("a's delivery of c3: %+v", got)
	}
	g.waitServing(c3, a, b)
	if got := readCurrent(t, c.path, "stamp"); got != stamp1 {
		t.Fatalf("c, down, serves %q", got)
	}
	c2nd := start(t, g.config("c", c.path))
	stamp3 := g.waitServing(c3, a, b, c2nd)
	if n := g.buildCount(); n != 3 {
		t.Fatalf("%d builds after c came back, want 3: c built instead of following", n)
	}
	if l := c2nd.Status().Last; l == nil || l.Reason != ReasonGroup {
		t.Errorf("c's last result after start %+v, want reason group", l)
	}
	if stamp3 == stamp1 {
		t.Error("c3 served the bytes of c1's build")
	}
	// A node that was never in the group before serves the group's
	// release as soon as it starts, without building.
	d := g.node("d")
	if got := g.waitServing(c3, a, d); got != stamp3 {
		t.Errorf("a new node serves %q, want %q", got, stamp3)
	}
	if n := g.buildCount(); n != 3 {
		t.Fatalf("%d builds after a new node joined, want 3", n)
	}
	waitConverged(t, b, 4)
}

// A rollback packs the node's own release again rather than trusting the
// archive in storage: with that archive corrupted, a node that joins after
// the rollback (and so must load the archive) still serves the first
// build's bytes.
func TestClusterRollbackStoresItsOwnRelease(t *testing.T) {
	g := newGroup(t)
	c1 := g.remote.commit(map[string]string{"index.html": "v1"})
	a := g.node("a")
	stamp1 := g.waitServing(c1, a)
	c2 := g.remote.commit(map[string]string{"index.html": "v2"})
	if got := a.wake(ReasonDelivery); got.Outcome != OutcomeDeployed {
		t.Fatalf("a's delivery: %+v", got)
	}
	g.waitServing(c2, a)
	ctx := context.Background()
	keys, err := g.storage.List(ctx, "github_webhook/clusters/blog/archives", false)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if !strings.HasSuffix(k, g.live().Release+".tar.zst") {
			if err := g.storage.Store(ctx, k, []byte("not an archive")); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := a.Rollback(t.Context(), ""); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	b := g.node("b")
	if got := g.waitServing(c1, a, b); got != stamp1 {
		t.Errorf("after the rollback the group serves %q, want the first build's %q", got, stamp1)
	}
}

// A storage outage (the storage folder replaced by a plain file, so that
// every call fails with ENOTDIR: tests run as root, and chmod stops no
// root) leaves every node serving, says so in the status, does not build
// or mark the tip failed, and once storage is back the delivery made
// during the outage goes live everywhere, built once.
func TestClusterStorageOutage(t *testing.T) {
	g := newGroup(t)
	c1 := g.remote.commit(map[string]string{"index.html": "v1"})
	a, b := g.node("a"), g.node("b")
	stamp1 := g.waitServing(c1, a, b)
	waitConverged(t, a, 2)

	if err := os.Rename(g.dir, g.dir+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(g.dir, []byte("not a folder"), 0o644); err != nil {
		t.Fatal(err)
	}
	c2 := g.remote.commit(map[string]string{"index.html": "v2"})
	got := a.wake(ReasonDelivery)
	if got.Outcome != OutcomeStorageFailed || !strings.Contains(got.Detail, "not a directory") {
		t.Errorf("a delivery during the outage: %+v", got)
	}
	for _, n := range []*target{a, b} {
		var cs *ClusterStatus
		waitFor(t, "storage errors counted on "+n.path, func() bool {
			cs = n.Status().Cluster
			return cs.Error != "" && cs.StorageErrors >= 2
		})
		if !strings.Contains(cs.Error, "not a directory") {
			t.Errorf("%s: cluster error %q", n.path, cs.Error)
		}
		if got := readCurrent(t, n.path, "stamp"); got != stamp1 {
			t.Errorf("%s serves %q during the outage, want the live release", n.path, got)
		}
	}
	if n := g.buildCount(); n != 1 {
		t.Fatalf("%d builds during the outage, want none", n)
	}

	if err := os.Remove(g.dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(g.dir+".away", g.dir); err != nil {
		t.Fatal(err)
	}
	g.waitServing(c2, a, b)
	if n := g.buildCount(); n != 2 {
		t.Fatalf("%d builds after the outage, want 2", n)
	}
	if a.Status().Last.Result != "ok" {
		t.Errorf("a's last result %+v", a.Status().Last)
	}
	cs := waitConverged(t, b, 2)
	if cs.StorageErrors == 0 {
		t.Error("storage_errors forgot the outage")
	}
}

// An archive whose digest differs from the live record's, or that would
// write outside its release, is refused with an error that says so; the
// node keeps serving what it has and writes nothing outside.
func TestClusterRefusesBadArchives(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "outside")
	for _, tc := range []struct {
		name    string
		entries []tar.Header
		digest  func(string) string
		want    string
	}{
		{name: "digest", entries: []tar.Header{{Name: "index.html", Typeflag: tar.TypeReg}},
			digest: func(string) string { return "sha256:" + strings.Repeat("0", 64) }, want: "digest"},
		{name: "dot-dot", entries: []tar.Header{{Name: "../evil", Typeflag: tar.TypeReg}}, want: `entry "../evil" is not a safe relative path`},
		{name: "absolute", entries: []tar.Header{{Name: outside, Typeflag: tar.TypeReg}}, want: "not a safe relative path"},
		{name: "dot-git", entries: []tar.Header{{Name: ".git/config", Typeflag: tar.TypeReg}}, want: "not a safe relative path"},
		{name: "through-symlink", entries: []tar.Header{
			{Name: "a", Typeflag: tar.TypeSymlink, Linkname: filepath.Dir(outside)},
			{Name: "a/outside", Typeflag: tar.TypeReg},
		}, want: `unpacking "a/outside"`},
		{name: "symlink-out", entries: []tar.Header{{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "../../../../etc/passwd"}},
			want: "resolves outside"},
		{name: "hardlink", entries: []tar.Header{{Name: "h", Typeflag: tar.TypeLink, Linkname: "/etc/passwd"}},
			want: "only folders, files and symlinks"},
		{name: "fifo", entries: []tar.Header{{Name: "pipe", Typeflag: tar.TypeFifo}},
			want: "only folders, files and symlinks"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGroup(t)
			c1 := g.remote.commit(map[string]string{"index.html": "v1"})
			a := g.node("a")
			stamp := g.waitServing(c1, a)

			data := tarZst(t, tc.entries)
			gl := &liveRecord{Commit: strings.Repeat("f", 40), Release: "20300101T000000Z-ffffffffffff", Digest: digestOf(data),
				Size: int64(len(data)), Node: "mallory", At: time.Now()}
			gl.Archive = "github_webhook/clusters/blog/archives/" + gl.Release + ".tar.zst"
			if tc.digest != nil {
				gl.Digest = tc.digest(gl.Digest)
			}
			ctx := context.Background()
			if err := g.storage.Store(ctx, gl.Archive, data); err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(gl)
			if err := g.storage.Store(ctx, "github_webhook/clusters/blog/live", b); err != nil {
				t.Fatal(err)
			}
			g.markMoved(gl.Node)
			var cs *ClusterStatus
			waitFor(t, "the archive refused", func() bool {
				cs = a.Status().Cluster
				return cs.Live != nil && cs.Live.Release == gl.Release && cs.Error != ""
			})
			if !strings.Contains(cs.Error, tc.want) || !strings.Contains(cs.Error, "refused") {
				t.Errorf("cluster error %q, want it to say %q", cs.Error, tc.want)
			}
			if cs.Converged || cs.Behind <= 0 {
				t.Errorf("a node that cannot follow shows converged %v, behind %v", cs.Converged, cs.Behind)
			}
			if l := a.Status().Last; l.Result != "error" || l.Error != cs.Error {
				t.Errorf("last result %+v", l)
			}
			if got := readCurrent(t, a.path, "stamp"); got != stamp {
				t.Errorf("serves %q after a refused archive", got)
			}
			if _, err := os.Lstat(outside); err == nil {
				t.Error("the archive wrote outside its release")
			}
			if _, err := os.Lstat(filepath.Join(a.path, "releases", gl.Release)); err == nil {
				t.Error("the refused release was left on disk")
			}
		})
	}
}

// tarZst is an archive of entries, each regular file holding "x".
func tarZst(t *testing.T, entries []tar.Header) []byte {
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(zw)
	for _, h := range entries {
		h.Mode = 0o644
		if h.Typeflag == tar.TypeReg {
			h.Size = 1
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte("x"))
		}
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

// Archives past keep are removed from storage, never the live one, also
// when the group is rolled back to an old release.
func TestClusterPrunesArchives(t *testing.T) {
	g := newGroup(t)
	cfg := g.config("a", filepath.Join(t.TempDir(), "a"))
	cfg.Keep = 2
	c1 := g.remote.commit(map[string]string{"index.html": "v1"})
	a := start(t, cfg)
	a.waitLive(c1)
	for i := 2; i <= 4; i++ {
		c := g.remote.commit(map[string]string{"index.html": "v" + string(rune('0'+i))})
		if got := a.wake(ReasonDelivery); got.Outcome != OutcomeDeployed || got.Commit != c {
			t.Fatalf("deploy %d: %+v", i, got)
		}
	}
	archives := func() []string {
		keys, err := g.storage.List(context.Background(), "github_webhook/clusters/blog/archives", false)
		if err != nil {
			t.Fatal(err)
		}
		for i, k := range keys {
			keys[i] = strings.TrimSuffix(filepath.Base(k), ".tar.zst")
		}
		return keys
	}
	st := a.Status()
	got := archives()
	slices.Sort(got)
	want := slices.Sorted(slices.Values(st.Releases[:2]))
	if !slices.Equal(got, want) {
		t.Fatalf("archives %v, want the 2 newest releases %v", got, st.Releases[:2])
	}
	if _, err := a.Rollback(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	c5 := g.remote.commit(map[string]string{"index.html": "v5"})
	if got := a.wake(ReasonDelivery); got.Outcome != OutcomeDeployed || got.Commit != c5 {
		t.Fatalf("deploy 5: %+v", got)
	}
	got = archives()
	if len(got) != 2 || !slices.Contains(got, a.Status().Live.Release) {
		t.Errorf("archives %v after another deploy; live %s", got, a.Status().Live.Release)
	}
}

// wakeFor wakes n with r and returns the check of that wake, past any
// that the group's watch records meanwhile.
func wakeFor(n *target, r Reason) Checked {
	n.t.Helper()
	before := n.Status().Checked.Count
	n.Wake(r)
	var c *Checked
	waitFor(n.t, "a wake for "+string(r)+" handled", func() bool {
		c = n.Status().Checked
		return c.Count > before && c.Reason == r
	})
	return *c
}

// The group has converged when every node that is not stale serves live's
// release; a node silent for longer than nodeStale is listed as stale.
func TestClusterStatusConverged(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	live := &liveRecord{Commit: "c2", Release: "r2", At: now.Add(-time.Minute)}
	self := nodeRecord{Node: "a", Release: "r2", Updated: now}
	for _, tc := range []struct {
		name      string
		serving   string // what this node serves
		others    []nodeRecord
		converged bool
		stale     []string
		behind    time.Duration
	}{
		{"all on live", "r2", []nodeRecord{{Node: "b", Release: "r2", Updated: now}}, true, nil, 0},
		{"one behind", "r2", []nodeRecord{{Node: "b", Release: "r1", Updated: now.Add(-time.Minute)}}, false, nil, 0},
		{"this node behind", "r1", []nodeRecord{{Node: "b", Release: "r2", Updated: now}}, false, nil, time.Minute},
		{"a silent node does not count", "r2", []nodeRecord{{Node: "gone", Release: "r1", Updated: now.Add(-time.Hour)}}, true, []string{"gone"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &Deployer{now: func() time.Time { return now }}
			d.group = groupState{name: "blog", live: live, nodes: append([]nodeRecord{self}, tc.others...)}
			cs := d.clusterStatus(&Cluster{Name: "blog", Node: "a"}, tc.serving, "")
			if cs.Converged != tc.converged || time.Duration(cs.Behind) != tc.behind {
				t.Errorf("converged %v behind %v, want %v %v", cs.Converged, time.Duration(cs.Behind), tc.converged, tc.behind)
			}
			var stale []string
			for _, n := range cs.Nodes {
				if n.Stale {
					stale = append(stale, n.Node)
				}
			}
			if !slices.Equal(stale, tc.stale) {
				t.Errorf("stale %v, want %v", stale, tc.stale)
			}
			if len(cs.Nodes) != 1+len(tc.others) || cs.Nodes[0].Node != "a" || !cs.Nodes[0].Self {
				t.Errorf("nodes %+v", cs.Nodes)
			}
		})
	}
}

// A reload that moves a target to another group (Update) makes the node
// record itself there, and its status speak of that group alone.
func TestClusterUpdateMovesToAnotherGroup(t *testing.T) {
	g := newGroup(t)
	c1 := g.remote.commit(map[string]string{"index.html": "v1"})
	cfg := g.config("a", filepath.Join(t.TempDir(), "a"))
	a := start(t, cfg)
	g.waitServing(c1, a)
	waitConverged(t, a, 1)

	moved := *cfg.Cluster
	moved.Name = "www"
	cfg.Cluster = &moved
	if err := a.Update(cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a's record in group www", func() bool {
		_, err := g.storage.Load(context.Background(), "github_webhook/clusters/www/nodes/a")
		return err == nil
	})
	var cs *ClusterStatus
	waitFor(t, "a's status about group www", func() bool {
		cs = a.Status().Cluster
		return cs.Name == "www" && len(cs.Nodes) == 1
	})
	if cs.Live != nil || cs.Converged {
		t.Errorf("group www has no live record yet, status says %+v", cs)
	}
}

// A builder that died (kill -9) leaves its build lease, and may leave the
// storage's lock file if it died while holding it: the lease expires, the
// file_system lock goes stale, and the next wake on another node builds.
func TestClusterDeadBuilderLeaseExpires(t *testing.T) {
	g := newGroup(t)
	c1 := g.remote.commit(map[string]string{"index.html": "v1"})
	a := g.node("a")
	g.waitServing(c1, a)

	ctx := context.Background()
	now := time.Now()
	lease, _ := json.Marshal(buildingRecord{Node: "dead", Commit: "0000", Since: now.Add(-time.Minute), Expires: now.Add(time.Second)})
	if err := g.storage.Store(ctx, "github_webhook/clusters/blog/building", lease); err != nil {
		t.Fatal(err)
	}
	lockFile := filepath.Join(g.dir, "locks", certmagic.StorageKeys.Safe("github_webhook/clusters/blog/build")+".lock")
	stale, _ := json.Marshal(map[string]time.Time{"created": now.Add(-time.Minute), "updated": now.Add(-time.Minute)})
	if err := os.MkdirAll(filepath.Dir(lockFile), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lockFile, stale, 0o644); err != nil {
		t.Fatal(err)
	}

	c2 := g.remote.commit(map[string]string{"index.html": "v2"})
	if got := wakeFor(a, ReasonDelivery); got.Outcome != OutcomeDeployed || got.Commit != c2 {
		t.Fatalf("a delivery after the builder died: %+v", got)
	}
	g.waitServing(c2, a)
	if n := g.buildCount(); n != 2 {
		t.Errorf("%d builds, want 2", n)
	}
	if rec := g.leaseRecord(); rec.Ended.IsZero() || !rec.Expires.IsZero() {
		t.Errorf("the build lease after the build: %+v, want it ended", rec)
	}
}

// A builder whose clock ran a year ahead and that then died leaves a lease
// that expires a year on, as its clock said: it is stale at once, and the
// next wake on another node builds. On main the group built nothing until
// then (here: the deploy waited for the dead node until its timeout).
func TestClusterLeaseFromAClockAheadIsStale(t *testing.T) {
	g := newGroup(t)
	c1 := g.remote.commit(map[string]string{"index.html": "v1"})
	cfg := g.config("a", filepath.Join(t.TempDir(), "a"))
	cfg.Timeout = 20 * time.Second
	a := start(t, cfg)
	g.waitServing(c1, a)

	ctx := context.Background()
	ahead := time.Now().AddDate(1, 0, 0)
	lease, _ := json.Marshal(buildingRecord{Node: "dead", Host: "host-dead", Commit: "0000", Since: ahead.Add(-time.Minute), Expires: ahead.Add(buildLease)})
	if err := g.storage.Store(ctx, "github_webhook/clusters/blog/building", lease); err != nil {
		t.Fatal(err)
	}

	c2 := g.remote.commit(map[string]string{"index.html": "v2"})
	if got := wakeFor(a, ReasonDelivery); got.Outcome != OutcomeDeployed || got.Commit != c2 {
		t.Fatalf("a delivery with a lease from a clock a year ahead: %+v", got)
	}
	g.waitServing(c2, a)
	if n := a.logs.FilterMessageSnippet("its holder's clock runs ahead").Len(); n != 1 {
		t.Errorf("%d warnings about the lease from a clock ahead, want 1", n)
	}
}

// Close ends the group's watch with the worker: no goroutine of the node
// is left, but certmagic's own lock refresher, which ends by itself.
func TestClusterCloseEndsTheWatch(t *testing.T) {
	g := newGroup(t)
	c1 := g.remote.commit(map[string]string{"index.html": "v1"})
	others := goleak.IgnoreCurrent()
	a := g.node("a")
	g.waitServing(c1, a)
	waitConverged(t, a, 1)
	a.close()
	if err := goleak.Find(others, goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.keepLockfileFresh")); err != nil {
		t.Errorf("a goroutine outlived Close: %v", err)
	}
}

// packTree refuses, on the builder, a name that every other node would
// refuse to unpack, and what it packs unpacks to the same tree: files,
// folders, the executable bit, symlinks and modification times.
func TestPackTree(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pub")
	mtime := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC) // Caddy's ETag holds the nanoseconds
	for name, content := range map[string]string{"index.html": "home", "a/b/page.html": "page", "run.sh": "#!/bin/sh"} {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(content), 0o644)
		os.Chtimes(p, mtime, mtime)
	}
	os.Chmod(filepath.Join(dir, "run.sh"), 0o755)
	os.Symlink("a/b/page.html", filepath.Join(dir, "link.html"))

	var data bytes.Buffer
	unpacked, err := packTree(dir, &data)
	if err != nil {
		t.Fatal(err)
	}
	if unpacked != int64(len("home")+len("page")+len("#!/bin/sh")) {
		t.Errorf("packTree says the files hold %d bytes", unpacked)
	}
	out := filepath.Join(t.TempDir(), "out")
	if err := unpackTree(&data, out, unpackLimits{declared: unpacked, free: -1}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"index.html": "home", "a/b/page.html": "page", "link.html": "page"} {
		if b, err := os.ReadFile(filepath.Join(out, name)); err != nil || string(b) != want {
			t.Errorf("%s: %q %v, want %q", name, b, err, want)
		}
	}
	if fi, err := os.Stat(filepath.Join(out, "run.sh")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("run.sh: %v %v, want mode 0755", fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Join(out, "index.html")); err != nil || !fi.ModTime().Equal(mtime) {
		t.Errorf("index.html's mtime %v, want %v: nodes would send other Last-Modified and ETag", fi.ModTime(), mtime)
	}
	if target, err := os.Readlink(filepath.Join(out, "link.html")); err != nil || target != "a/b/page.html" {
		t.Errorf("link.html -> %q %v", target, err)
	}

	os.WriteFile(filepath.Join(dir, "a", "GIT~1"), []byte("x"), 0o644)
	if _, err := packTree(dir, io.Discard); err == nil || !strings.Contains(err.Error(), `"a/GIT~1" is a name other nodes refuse`) {
		t.Errorf("packing a .git look-alike: %v", err)
	}
}

// A rollback to a release that this node had pruned down to its spare: the
// node follows by unpacking the group's archive (only the published
// folder) into that folder; that folder is never taken for the spare again,
// and the next deploy serves its commit. (Here the prune after the follow
// also picks another spare; followRelease drops the spare itself too, for
// when no other release can be the spare, a case this test does not reach.)
func TestClusterFollowIntoTheSpareDropsIt(t *testing.T) {
	g := newGroup(t)
	cfgA := g.config("a", filepath.Join(t.TempDir(), "a"))
	cfgA.Commands, cfgA.Publish, cfgA.Keep = nil, "public", 2
	cfgB := g.config("b", filepath.Join(t.TempDir(), "b"))
	cfgB.Commands, cfgB.Publish, cfgB.Keep = nil, "public", 5
	c1 := g.remote.commit(map[string]string{"public/index.html": "v1", "notes.txt": "n1"})
	a := start(t, cfgA)
	a.waitLive(c1)
	b := start(t, cfgB)
	b.waitLive(c1)
	r1 := g.live().Release
	var tip string
	for _, v := range []string{"v2", "v3"} {
		tip = g.remote.commit(map[string]string{"public/index.html": v, "notes.txt": "n" + v})
		if got := a.wake(ReasonDelivery); got.Outcome != OutcomeDeployed {
			t.Fatalf("a's delivery of %s: %+v", v, got)
		}
		b.waitLive(tip)
	}
	st, err := loadState(cfgA.Path)
	if err != nil || st.Spare == nil || st.Spare.Name != r1 {
		t.Fatalf("a's spare %+v (%v), want %s: the test needs the release rolled back to as a's spare", st.Spare, err, r1)
	}
	if _, err := b.Rollback(t.Context(), r1); err != nil {
		t.Fatalf("rollback through b: %v", err)
	}
	a.waitLive(c1)
	if st, err := loadState(cfgA.Path); err != nil || st.Spare != nil && st.Spare.Name == r1 {
		t.Fatalf("a still takes %s, now its live release unpacked from the group's archive, for its spare (%v)", r1, err)
	}
	c4 := g.remote.commit(map[string]string{"public/index.html": "v4", "notes.txt": "n4"})
	if got := a.wake(ReasonDelivery); got.Outcome != OutcomeDeployed {
		t.Fatalf("a's delivery of v4: %+v", got)
	}
	b.waitLive(c4)
	if got := readCurrent(t, cfgA.Path, "index.html"); got != "v4" {
		t.Errorf("a serves %q, want v4", got)
	}
}

// The group's live record is stored as liveRecord, versioned: a record
// without a version (as nodes wrote before records had one) reads as
// version 1; one of a version this node does not know is refused with an
// error that says so, shown in the status, and nothing is followed.
func TestClusterLiveRecordVersions(t *testing.T) {
	g := newGroup(t)
	d, cfg := g.unstarted("a")
	ctx := context.Background()
	key := "github_webhook/clusters/blog/live"
	old := `{"commit":"c1","release":"r1","archive":"github_webhook/clusters/blog/archives/r1.tar.zst","digest":"sha256:00","size":3}`
	g.storage.Store(ctx, key, []byte(old))
	gl, err := d.readLive(ctx, cfg.Cluster)
	if err != nil || gl.Version != 1 || gl.Release != "r1" {
		t.Errorf("a record without a version: %+v, %v", gl, err)
	}
	if s := d.Status().Cluster; s.Live == nil || s.Live.Release != "r1" || s.Live.Archive == "" {
		t.Errorf("status of a version 1 record: %+v", s.Live)
	}
	g.storage.Store(ctx, key, []byte(`{"version":2,"commit":"c2","release":"r2","digest":"sha256:00","layout":"new"}`))
	gl, err = d.readLive(ctx, cfg.Cluster)
	var ve *versionError
	if gl != nil || !errors.As(err, &ve) || !strings.Contains(err.Error(), "version 2, this node reads up to version 1") {
		t.Errorf("a record of version 2: %+v, %v", gl, err)
	}
	if s := d.Status().Cluster; !strings.Contains(s.Error, "version 2") {
		t.Errorf("status error after a version 2 record: %q", s.Error)
	}
}
