package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Metrics the cluster tests read (caddywebhook/observe.go).
const (
	metricDeploys = "caddy_github_webhook_deploys_total"
	metricBehind  = "caddy_github_webhook_cluster_behind_seconds"
	metricStorage = "caddy_github_webhook_cluster_storage_errors_total"
)

// TestClusterDeliveryAndRollback starts three nodes sharing one storage
// folder: the group builds the first commit once at start-up and every node
// serves its bytes. A delivery to node a puts the next commit live on all
// three with one build (a's), and a rollback through node b's admin API
// moves all three back to the first build's bytes without a build. The
// nodes answer the same ETags, so that caches see one site.
func TestClusterDeliveryAndRollback(t *testing.T) {
	g := newGroup(t, 3)
	a, b, c := g.nodes[0], g.nodes[1], g.nodes[2]
	first := g.remote.Git("rev-parse", "HEAD")
	g.startAll()

	// Start-up: three wakes, one build.
	built1 := g.waitServing(first, a, b, c)
	g.waitConverged(first)
	g.requireOneBuild(first)

	// What every node says of the group.
	ids := map[string]string{}
	for _, n := range g.nodes {
		st := n.status()
		cl := st.Cluster
		if cl.Name != groupName || cl.Live == nil || !strings.HasPrefix(cl.Live.Digest, "sha256:") || cl.Live.Size <= 0 || cl.Live.Archive == "" || cl.Live.Release != st.Live.Release {
			t.Errorf("node %s: cluster %+v, live %+v", n.name, cl, cl.Live)
		}
		if len(cl.Nodes) != 3 {
			t.Errorf("node %s lists %d nodes, want 3: %+v", n.name, len(cl.Nodes), cl.Nodes)
		}
		self := 0
		for _, r := range cl.Nodes {
			if r.Self {
				self++
				if r.Node != cl.Node {
					t.Errorf("node %s: its own record is %q, its id %q", n.name, r.Node, cl.Node)
				}
			}
			if !r.Converged || r.Commit != first || r.Release != cl.Live.Release {
				t.Errorf("node %s: record %+v, want converged on %s", n.name, r, cl.Live.Release)
			}
		}
		if self != 1 {
			t.Errorf("node %s: %d records say self, want 1: %+v", n.name, self, cl.Nodes)
		}
		ids[n.name] = cl.Node
	}
	if ids["a"] == ids["b"] || ids["b"] == ids["c"] || ids["a"] == ids["c"] {
		t.Fatalf("node ids %v: three nodes, one id", ids)
	}

	// A delivery to a: a builds, b and c follow.
	second := g.remote.Commit("Second version", map[string]string{"index.html": "<h1>Second version</h1>\n"})
	a.deliver("e2e-cluster-push", first, second)
	built2 := g.waitServing(second, a, b, c)
	g.waitConverged(second)
	g.requireOneBuild(second)
	if built2 == built1 {
		t.Fatalf("the second build's build.txt is the first's: %q", built2)
	}
	if err := pageShows(c.url("/"), "Second version"); err != nil {
		t.Error(err)
	}
	g.sameETags(g.nodes, "/build.txt", "/index.html")
	if live := a.status().Cluster.Live; live.Node != ids["a"] {
		t.Errorf("the group's live record was built by %q, want a (%s), the node the delivery went to", live.Node, ids["a"])
	}
	for _, n := range []*node{b, c} {
		st := n.status()
		if st.Last == nil || st.Last.Result != "ok" || st.Last.Reason != "group" || st.Last.Commit != second {
			t.Errorf("node %s: last %+v; want ok, reason group (followed without a build)", n.name, st.Last)
		}
		if len(st.Releases) == 0 || st.Releases[0] != a.status().Live.Release {
			t.Errorf("node %s: releases %v, want a's release name %s first", n.name, st.Releases, a.status().Live.Release)
		}
	}
	// Two builds in the group, one per commit, the rest followed; nobody
	// is behind.
	all := g.nodes
	if ok := g.sumMetric(all, metricDeploys, map[string]string{"result": "ok"}); ok != 2 {
		t.Errorf("%s{result=ok} summed over the nodes: %v, want 2 (one build per commit)", metricDeploys, ok)
	}
	if followed := g.sumMetric(all, metricDeploys, map[string]string{"result": "followed"}); followed != 4 {
		t.Errorf("%s{result=followed} summed over the nodes: %v, want 4 (two nodes, two commits)", metricDeploys, followed)
	}
	for _, n := range all {
		if v, ok := n.metric(metricBehind, nil); !ok || v != 0 {
			t.Errorf("node %s: %s = %v (present %v), want 0", n.name, metricBehind, v, ok)
		}
	}

	// Rollback through b: the group goes back to the first build's bytes.
	code, body := b.adminPost("/github_webhook/rollback", map[string]string{"path": b.path})
	if code != http.StatusOK {
		t.Fatalf("rollback through b: %d %s", code, body)
	}
	if got := g.waitServing(first, a, b, c); got != built1 {
		t.Errorf("after the rollback the nodes serve %q, want the first build's %q", got, built1)
	}
	g.waitConverged(first)
	for _, n := range g.nodes {
		if live := n.status().Cluster.Live; live.PinnedFrom != second {
			t.Errorf("node %s: the group's live record %+v, want pinned_from %s", n.name, live, second)
		}
	}
	g.requireOneBuild(first)
	g.requireOneBuild(second)
	for _, n := range g.nodes {
		if errs := n.proc.errors(); len(errs) > 0 {
			t.Errorf("node %s logged errors: %+v", n.name, errs)
		}
	}
}

// TestClusterNodeDownDuringPush stops node c, pushes to a: a and b serve the
// commit and say that c has not converged. Started again, c serves its last
// release at once, then the group's, without a build.
func TestClusterNodeDownDuringPush(t *testing.T) {
	g := newGroup(t, 3)
	a, b, c := g.nodes[0], g.nodes[1], g.nodes[2]
	first := g.remote.Git("rev-parse", "HEAD")
	g.startAll()
	built1 := g.waitServing(first, a, b, c)
	g.waitConverged(first)
	cID := c.id()

	c.stop(syscall.SIGTERM)
	second := g.remote.Commit("Second version", map[string]string{"index.html": "<h1>Second version</h1>\n"})
	a.deliver("e2e-cluster-down", first, second)
	built2 := g.waitServing(second, a, b)
	g.requireOneBuild(second)
	// a and b see c's record: still on the first commit, not converged.
	for _, n := range []*node{a, b} {
		waitUntil(t, 30*time.Second, "node "+n.name+" to list c behind", func() error {
			cl := n.status().Cluster
			for _, r := range cl.Nodes {
				if r.Node == cID && r.Commit == first && !r.Converged && !cl.Converged {
					return nil
				}
			}
			return fmt.Errorf("cluster %+v", cl)
		})
	}

	// c's own folder still points to the first build: what it will serve
	// as soon as it listens.
	if got, err := os.ReadFile(filepath.Join(c.path, "current", "build.txt")); err != nil || string(got) != built1 {
		t.Fatalf("c's current build.txt on disk: %v %q, want %q", err, got, built1)
	}
	w := g.watch(c)
	w.starting = true
	c.start()
	if got := g.waitServing(second, a, b, c); got != built2 {
		t.Errorf("c serves %q, want a's build %q", got, built2)
	}
	g.waitConverged(second)
	w.requireServed(t, built1, built2)
	if first, ok := w.first("c"); !ok || first != built1 {
		t.Errorf("c's first answer after the start was %q, want its last release's %q", first, built1)
	}
	g.requireOneBuild(second)
	if st := c.status(); st.Last == nil || st.Last.Reason != "group" || st.Last.Result != "ok" || st.Last.Commit != second {
		t.Errorf("c after its start: last %+v; want ok, reason group (followed without a build)", st.Last)
	}
	if v, ok := c.metric(metricBehind, nil); !ok || v != 0 {
		t.Errorf("c: %s = %v (present %v), want 0 once it serves the group's release", metricBehind, v, ok)
	}
}

// TestClusterBuilderKilledMidBuild kills node a with SIGKILL while it builds
// a commit, holding the group's build. A wake of b through its admin API
// waits until a's claim expires (15 s after its last renewal), builds the
// commit, and b and c serve it; a, started again, follows without a build.
//
// a's delivery comes right after the start-up, where b and c took and
// released the group's storage lock a moment before a took it: certmagic's
// file_system storage refreshes a lock file from a goroutine of each Lock
// call until, at one of its 5 s ticks, the file is gone, so b and c keep
// a's lock file fresh after a is killed; the group's claim must not depend
// on it.
func TestClusterBuilderKilledMidBuild(t *testing.T) {
	g := newGroup(t, 3)
	a, b, c := g.nodes[0], g.nodes[1], g.nodes[2]
	first := g.remote.Git("rev-parse", "HEAD")
	g.startAll()
	built1 := g.waitServing(first, a, b, c)
	g.waitConverged(first)
	bID := b.id()

	// A build that waits, on a, the node the delivery goes to.
	second := g.remote.Commit("A held build", map[string]string{"hold": "", "index.html": "<h1>Second version</h1>\n"})
	a.deliver("e2e-cluster-kill", first, second)
	var pid int
	waitUntil(t, 30*time.Second, "a's build to start", func() error {
		var err error
		pid, err = readPID(filepath.Join(g.pidDir, "build.pid"))
		return err
	})
	t.Cleanup(func() {
		if !processGone(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if st := a.status(); st.Running == nil || st.Running.Commit != second {
		t.Fatalf("a does not build %s: running %+v", second[:12], st.Running)
	}
	a.stop(syscall.SIGKILL)
	killed := time.Now()
	waitUntil(t, 10*time.Second, "a's build to end with it", func() error {
		if !processGone(pid) {
			return fmt.Errorf("build %d still runs", pid)
		}
		return nil
	})
	// From now on a build runs through.
	if err := os.WriteFile(filepath.Join(g.pidDir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	w := g.watch(b, c)

	code, body := b.adminPost("/github_webhook/deploy", map[string]string{"path": b.path})
	if code != http.StatusAccepted {
		t.Fatalf("wake through b's admin API: %d %s", code, body)
	}
	// b waits for a's claim to expire, then builds: the build script's
	// second start. Should it not, the storage lock file may say why.
	waitUntil(t, 40*time.Second, "b to take the group's lock and build", func() error {
		if started, _ := g.buildCount(second); started < 2 {
			return fmt.Errorf("b's status %+v; the group's lock file (a was killed %v ago): %s",
				b.status().Running, time.Since(killed).Round(time.Second), g.lockFile())
		}
		return nil
	})
	built2 := g.waitServing(second, b, c)
	w.requireServed(t, built1, built2)
	if started, done := g.buildCount(second); started != 2 || done != 1 {
		t.Errorf("builds of %s: %d started, %d ended; want a's, killed, and one that ended", second[:12], started, done)
	}
	if live := b.status().Cluster.Live; live.Node != bID {
		t.Errorf("the group's live record was built by %q, want b (%s)", live.Node, bID)
	}

	// a comes back: serves what it had, then the group's build.
	a.start()
	if got := g.waitServing(second, a, b, c); got != built2 {
		t.Errorf("a serves %q after its start, want b's build %q", got, built2)
	}
	g.waitConverged(second)
	if started, done := g.buildCount(second); started != 2 || done != 1 {
		t.Errorf("builds of %s after a's start: %d started, %d ended; want no more", second[:12], started, done)
	}
}

// TestClusterStorageOutage takes the shared storage away (the folder moved
// and a plain file in its place, so that every key fails with ENOTDIR even
// for root) while a push is delivered: every node keeps serving its release
// with 200, and says in its status and metrics that storage fails. Once the
// folder is back, the error clears and the push goes live on every node,
// built once.
func TestClusterStorageOutage(t *testing.T) {
	g := newGroup(t, 3)
	a, b, c := g.nodes[0], g.nodes[1], g.nodes[2]
	first := g.remote.Git("rev-parse", "HEAD")
	g.startAll()
	built1 := g.waitServing(first, a, b, c)
	g.waitConverged(first)
	w := g.watch(a, b, c)

	away := g.storage + ".away"
	if err := os.Rename(g.storage, away); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(g.storage, []byte("not a folder\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if restored {
			return
		}
		restored = true
		if err := os.Remove(g.storage); err != nil {
			t.Error(err)
		}
		if err := os.Rename(away, g.storage); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(restore)

	// Every node notices, and keeps trying.
	errs := map[string]int{}
	for _, n := range g.nodes {
		waitUntil(t, 30*time.Second, "node "+n.name+" to report the storage error", func() error {
			cl := n.status().Cluster
			if cl == nil || cl.Error == "" || cl.StorageErrors == 0 {
				return fmt.Errorf("cluster %+v", cl)
			}
			errs[n.name] = cl.StorageErrors
			return nil
		})
	}
	for _, n := range g.nodes {
		waitUntil(t, 30*time.Second, "node "+n.name+" to retry", func() error {
			if cl := n.status().Cluster; cl.StorageErrors <= errs[n.name] {
				return fmt.Errorf("storage errors %d, were %d", cl.StorageErrors, errs[n.name])
			}
			return nil
		})
		if v, ok := n.metric(metricStorage, nil); !ok || v == 0 {
			t.Errorf("node %s: %s = %v (present %v), want more than 0", n.name, metricStorage, v, ok)
		}
	}

	// A push during the outage: accepted, and the wake handled, but no
	// node serves it while the group cannot agree on it.
	second := g.remote.Commit("Second version", map[string]string{"index.html": "<h1>Second version</h1>\n"})
	before := a.status().Checked
	a.deliver("e2e-cluster-outage", first, second)
	waitUntil(t, 30*time.Second, "a to take up the wake", func() error {
		st := a.status()
		switch {
		case st.Running != nil:
		case st.Checked != nil && (before == nil || st.Checked.Count != before.Count):
		default:
			return fmt.Errorf("checked %+v, running %+v, last %+v", st.Checked, st.Running, st.Last)
		}
		return nil
	})
	t.Logf("a during the outage: %+v", a.status().Checked)
	for _, n := range g.nodes {
		if got, err := n.served(); err != nil || got != built1 {
			t.Errorf("node %s serves %q (%v) during the outage, want %q", n.name, got, err, built1)
		}
	}

	restore()
	built2 := g.waitServing(second, a, b, c)
	g.waitConverged(second)
	g.requireOneBuild(second)
	w.requireServed(t, built1, built2)
}

// TestClusterTamperedArchive starts node c, after a push it missed, with
// the group's archive of that push altered in storage: c refuses it (its
// digest differs from the live record's), keeps serving its last release,
// and says how long it has been behind, in its status and in
// caddy_github_webhook_cluster_behind_seconds. It does not load that
// archive again by itself; once the archive is restored, a wake through its
// admin API makes it follow, without a build.
func TestClusterTamperedArchive(t *testing.T) {
	g := newGroup(t, 3)
	a, b, c := g.nodes[0], g.nodes[1], g.nodes[2]
	first := g.remote.Git("rev-parse", "HEAD")
	g.startAll()
	built1 := g.waitServing(first, a, b, c)
	g.waitConverged(first)

	c.stop(syscall.SIGTERM)
	second := g.remote.Commit("Second version", map[string]string{"index.html": "<h1>Second version</h1>\n"})
	a.deliver("e2e-cluster-tamper", first, second)
	built2 := g.waitServing(second, a, b)
	live := a.status().Cluster.Live
	archive := filepath.Join(g.storage, filepath.FromSlash(live.Archive))
	orig, err := os.ReadFile(archive)
	if err != nil {
		t.Fatalf("the group's archive of %s: %v", second[:12], err)
	}
	// The same size, one byte changed in the middle.
	bad := append([]byte(nil), orig...)
	bad[len(bad)/2] ^= 0xff
	if err := os.WriteFile(archive, bad, 0o644); err != nil {
		t.Fatal(err)
	}

	w := g.watch(c)
	w.starting = true
	c.start()
	waitUntil(t, 30*time.Second, "c to say it is behind", func() error {
		st := c.status()
		if cl := st.Cluster; cl == nil || cl.Live == nil || cl.Live.Commit != second || cl.Behind <= 0 {
			return fmt.Errorf("cluster %+v, last %+v", st.Cluster, st.Last)
		}
		if v, ok := c.metric(metricBehind, nil); !ok || v <= 0 {
			return fmt.Errorf("%s = %v (present %v)", metricBehind, v, ok)
		}
		return nil
	})
	st := c.status()
	t.Logf("c with a tampered archive: live %+v, last %+v, cluster error %q", st.Live, st.Last, st.Cluster.Error)
	if st.Live == nil || st.Live.Commit != first {
		t.Errorf("c's live release %+v, want the first commit's", st.Live)
	}
	if st.Last == nil || st.Last.Result != "error" || !strings.Contains(st.Last.Error, "digest") || st.Last.Commit != second {
		t.Errorf("c's last deploy %+v, want an error naming the digest of %s's archive", st.Last, second[:12])
	}
	if !strings.Contains(st.Cluster.Error, live.Archive) {
		t.Errorf("c's cluster error %q does not name the refused archive %s", st.Cluster.Error, live.Archive)
	}
	if got, err := c.served(); err != nil || got != built1 {
		t.Errorf("c serves %q (%v) with the archive tampered, want its last release's %q", got, err, built1)
	}

	// c does not load a refused archive again until the group's live
	// record changes; a wake through its admin API tries again.
	if err := os.WriteFile(archive, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, body := c.adminPost("/github_webhook/deploy", map[string]string{"path": c.path}); code != http.StatusAccepted {
		t.Fatalf("wake through c's admin API: %d %s", code, body)
	}
	if got := g.waitServing(second, a, b, c); got != built2 {
		t.Errorf("c serves %q once the archive is restored, want %q", got, built2)
	}
	w.requireServed(t, built1, built2)
	g.requireOneBuild(second)
	// Once c serves the group's release, its status has no error left.
	waitUntil(t, 30*time.Second, "c to see the group converged", func() error {
		if cl := c.status().Cluster; !cl.Converged || cl.Behind != 0 || len(cl.Nodes) != 3 {
			return fmt.Errorf("cluster %+v", cl)
		}
		return nil
	})
	if e := c.status().Cluster.Error; e != "" {
		t.Errorf("c serves the group's release, but its cluster error still says %q", e)
	}
	g.waitConverged(second)
}

// TestClusterAnyNodeBuildsAndArchivesPruned delivers three pushes, each to
// another node: whichever node is woken builds, once, and the others
// follow; storage keeps the archives of the last three releases (keep's
// default), the live one among them, and every node keeps the same three
// releases.
func TestClusterAnyNodeBuildsAndArchivesPruned(t *testing.T) {
	g := newGroup(t, 3)
	first := g.remote.Git("rev-parse", "HEAD")
	g.startAll()
	g.waitServing(first, g.nodes...)
	g.waitConverged(first)

	prev := first
	for i, n := range g.nodes {
		commit := g.remote.Commit(fmt.Sprintf("Version %d", i+2), map[string]string{"index.html": fmt.Sprintf("<h1>Version %d</h1>\n", i+2)})
		n.deliver(fmt.Sprintf("e2e-cluster-any-%d", i), prev, commit)
		g.waitServing(commit, g.nodes...)
		g.waitConverged(commit)
		g.requireOneBuild(commit)
		if live := n.status().Cluster.Live; live.Node != n.id() {
			t.Errorf("push %d, delivered to %s: built by %s, want %s", i+1, n.name, live.Node, n.id())
		}
		prev = commit
	}

	live := g.nodes[0].status().Cluster.Live
	dir := filepath.Join(g.storage, filepath.FromSlash(filepath.Dir(live.Archive)))
	waitUntil(t, 30*time.Second, "the group's archives to be pruned to three", func() error {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if len(names) != 3 || !slices.Contains(names, filepath.Base(live.Archive)) {
			return fmt.Errorf("archives %v, want three, %s among them", names, filepath.Base(live.Archive))
		}
		return nil
	})
	want := g.nodes[0].status().Releases
	if len(want) != 3 || want[0] != live.Release {
		t.Errorf("a's releases %v, want three, %s first", want, live.Release)
	}
	for _, n := range g.nodes[1:] {
		if got := n.status().Releases; !slices.Equal(got, want) {
			t.Errorf("node %s keeps releases %v, a keeps %v", n.name, got, want)
		}
	}
}
