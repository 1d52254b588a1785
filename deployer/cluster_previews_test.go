package deployer

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

// previewNode is the config of node id of g with previews on.
func (g *sharedGroup) previewNode(id string) Config {
	cfg := g.config(id, filepath.Join(g.t.TempDir(), id))
	cfg.Branch = "main"
	cfg.Previews = &Previews{Host: "pr-{number}.preview.test"}
	return cfg
}

// buildsOf is how many builds of commit ran in the whole group.
func (g *sharedGroup) buildsOf(commit string) int {
	b, err := os.ReadFile(g.builds)
	if errors.Is(err, fs.ErrNotExist) {
		return 0
	}
	if err != nil {
		g.t.Fatal(err)
	}
	return strings.Count(string(b), commit+"\n")
}

// waitPreviewEverywhere waits until every node serves head at number's
// preview, and returns the stamp they serve, which must be the same bytes.
func (g *sharedGroup) waitPreviewEverywhere(number int, head string, nodes ...*target) string {
	g.t.Helper()
	stamp := ""
	for _, n := range nodes {
		p := n.waitPreview(number, PreviewLive, head)
		got := previewFile(g.t, n.path, p.Host, "stamp")
		if stamp == "" {
			stamp = got
		} else if got != stamp {
			g.t.Errorf("%s serves preview stamp %q, another node %q: not the bytes of one build", n.path, got, stamp)
		}
		if !n.PreviewHost(p.Host) {
			g.t.Errorf("%s does not know the preview's host", n.path)
		}
	}
	return stamp
}

// previewArchives lists the storage keys of number's preview's archives.
func (g *sharedGroup) previewArchives(number int) []string {
	keys, err := g.storage.List(context.Background(), "github_webhook/clusters/blog/previews/"+strconv.Itoa(number)+"/archives", false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		g.t.Fatal(err)
	}
	return keys
}

// gated makes cfg's preview builds wait until the file gate exists (60 s
// at most).
func gated(cfg *Config, gate string) {
	cfg.Commands = append([][]string{{"sh", "-c", `[ -z "$DEPLOY_PR" ] && exit 0; i=0; while [ ! -e "$1" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done`, "sh", gate}}, cfg.Commands...)
}

// TestClusterPreviewsSharedByTheGroup: a pull request's preview, woken on
// two nodes at once, is built once in the group and served by all three
// nodes with the same bytes; a push is built once and replaces it on every
// node, its old archive deleted from storage; a follower that restarts
// serves the preview at once and follows the next push without building;
// closing it on a node that did not build it removes it from every node
// and its archives from storage.
func TestClusterPreviewsSharedByTheGroup(t *testing.T) {
	g := newGroup(t)
	c1 := g.remote.commit(map[string]string{"index.html": "main"})
	ca, cb, cc := g.previewNode("a"), g.previewNode("b"), g.previewNode("c")
	// The first preview build waits until the other node woken for it
	// waits for its lease.
	gate := filepath.Join(t.TempDir(), "gate")
	for _, cfg := range []*Config{&ca, &cb, &cc} {
		gated(cfg, gate)
	}
	a, b, c := start(t, ca), start(t, cb), start(t, cc)
	g.waitServing(c1, a, b, c)
	host := "pr-7.preview.test"

	head := g.remote.PullRequest(7, "pr", map[string]string{"index.html": "pull request 7"})
	for _, n := range []*target{a, b} {
		if ans := n.PullRequest(PullRequest{Number: 7, Action: "opened", Head: head}); !ans.Queued {
			t.Fatalf("opened: %+v", ans)
		}
	}
	waitFor(t, "a node waiting for the other's build of the preview", func() bool {
		const waiting = "another node builds this preview for the group; waiting for it"
		return a.logs.FilterMessage(waiting).Len()+b.logs.FilterMessage(waiting).Len() > 0
	})
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	stamp1 := g.waitPreviewEverywhere(7, head, a, b, c)
	if n := g.buildsOf(head); n != 1 {
		t.Fatalf("%d builds of the preview's head in the group, want 1", n)
	}
	if got := previewFile(t, c.path, host, "index.html"); got != "pull request 7" {
		t.Errorf("a follower's preview serves %q", got)
	}
	if got := readCurrent(t, c.path, "index.html"); got != "main" {
		t.Errorf("a follower's site serves %q", got)
	}

	// A push, delivered to a follower.
	head2 := g.remote.PullRequest(7, "pr again", map[string]string{"index.html": "pull request 7, pushed again"})
	c.PullRequest(PullRequest{Number: 7, Action: "synchronize", Head: head2})
	stamp2 := g.waitPreviewEverywhere(7, head2, a, b, c)
	if stamp2 == stamp1 {
		t.Error("the push serves the first build's bytes")
	}
	if n := g.buildsOf(head2); n != 1 {
		t.Fatalf("%d builds of the pushed head in the group, want 1", n)
	}
	waitFor(t, "the preview's old archive deleted from storage", func() bool {
		return len(g.previewArchives(7)) == 1
	})

	// A follower restarts: the preview is served at once, and the next
	// push is followed, not built.
	b.close()
	b2 := start(t, cb)
	if got := previewFile(t, cb.Path, host, "stamp"); got != stamp2 {
		t.Errorf("after a restart the follower serves preview stamp %q, want %q", got, stamp2)
	}
	head3 := g.remote.PullRequest(7, "pr third", map[string]string{"index.html": "pull request 7, third"})
	a.PullRequest(PullRequest{Number: 7, Action: "synchronize", Head: head3})
	g.waitPreviewEverywhere(7, head3, a, b2, c)
	if n := g.buildsOf(head3); n != 1 {
		t.Fatalf("%d builds of the third head in the group, want 1", n)
	}

	// Closed on the restarted follower: gone everywhere.
	if ans := b2.PullRequest(PullRequest{Number: 7, Action: "closed"}); !ans.Queued {
		t.Fatalf("closed: %+v", ans)
	}
	for _, n := range []*target{a, b2, c} {
		waitFor(t, "the preview's folder removed on "+n.path, func() bool {
			_, err := os.Stat(filepath.Join(n.path, previewsName, host))
			return errors.Is(err, fs.ErrNotExist) && n.previewOf(7) == nil && !n.PreviewHost(host)
		})
	}
	if keys := g.previewArchives(7); len(keys) != 0 {
		t.Errorf("the closed preview's archives are still in storage: %v", keys)
	}
	for _, n := range []*target{a, b2, c} {
		if got := readCurrent(t, n.path, "index.html"); got != "main" {
			t.Errorf("%s's site serves %q after the close", n.path, got)
		}
	}
}

// TestClusterPreviewClosedBeforeShared: a pull request closed on a node
// that has no preview of it (another node builds it) is removed from the
// group: the build that ends after the close is neither shared nor kept.
func TestClusterPreviewClosedBeforeShared(t *testing.T) {
	g := newGroup(t)
	c1 := g.remote.commit(map[string]string{"index.html": "main"})
	gate := filepath.Join(t.TempDir(), "gate")
	ca, cb := g.previewNode("a"), g.previewNode("b")
	// a's preview builds wait for the gate.
	gated(&ca, gate)
	a, b := start(t, ca), start(t, cb)
	g.waitServing(c1, a, b)
	head := g.remote.PullRequest(3, "pr", map[string]string{"index.html": "pr 3"})
	a.PullRequest(PullRequest{Number: 3, Action: "opened", Head: head})
	a.waitPreview(3, PreviewBuilding, "")
	if ans := b.PullRequest(PullRequest{Number: 3, Action: "closed"}); !ans.Queued {
		t.Fatalf("closed on a node without the preview: %+v", ans)
	}
	waitFor(t, "the group's tombstone of the preview", func() bool {
		raw, err := g.storage.Load(context.Background(), "github_webhook/clusters/blog/previews-live")
		if err != nil {
			return false
		}
		x, err := decodePreviewIndex(raw)
		return err == nil && x.find(3) != nil && x.find(3).Removed
	})
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the preview gone on a", func() bool {
		_, err := os.Stat(filepath.Join(ca.Path, previewsName, "pr-3.preview.test"))
		return a.previewOf(3) == nil && errors.Is(err, fs.ErrNotExist)
	})
	if n := g.buildsOf(head); n != 1 {
		t.Errorf("%d builds of the preview, want 1 (the one cancelled by nothing)", n)
	}
	if b.previewOf(3) != nil {
		t.Error("b has the closed preview")
	}
	if keys := g.previewArchives(3); len(keys) != 0 {
		t.Errorf("the closed preview's archives are in storage: %v", keys)
	}
}

// keyCountingStorage counts the Loads of each key.
type keyCountingStorage struct {
	Storage
	mu    sync.Mutex
	loads map[string]int
}

func (s *keyCountingStorage) Load(ctx context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	s.loads[key]++
	s.mu.Unlock()
	return s.Storage.Load(ctx, key)
}

func (s *keyCountingStorage) count(suffix string) (n, all int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.loads {
		all += v
		if strings.HasSuffix(k, suffix) {
			n += v
		}
	}
	return n, all
}

// TestClusterPreviewsIdleReads: at idle, a node of a group reads the
// group's previews once per watch tick with previews on (no poll of its
// own), and never with them off.
func TestClusterPreviewsIdleReads(t *testing.T) {
	for _, on := range []bool{false, true} {
		g := newGroup(t)
		c1 := g.remote.commit(map[string]string{"index.html": "main"})
		cs := &keyCountingStorage{Storage: g.storage, loads: map[string]int{}}
		cfg := g.config("a", filepath.Join(t.TempDir(), "a"))
		if on {
			cfg = g.previewNode("a")
		}
		cfg.Cluster.Storage = cs
		a := start(t, cfg)
		g.waitServing(c1, a)
		ticks := func() int {
			a.Deployer.mu.Lock()
			defer a.Deployer.mu.Unlock()
			return a.Deployer.group.ticks
		}
		t0 := ticks()
		p0, all0 := cs.count("/previews-live")
		waitFor(t, "50 watch ticks", func() bool { return ticks() >= t0+50 })
		a.close()
		p1, all1 := cs.count("/previews-live")
		dt, reads, previews := ticks()-t0, all1-all0, p1-p0
		t.Logf("previews %v: %d ticks, %d loads (%.2f per tick), %d of the previews' record", on, dt, reads, float64(reads)/float64(dt), previews)
		if !on && previews != 0 {
			t.Errorf("previews off: the previews' record was read %d times", previews)
		}
		if on && (previews < dt-1 || previews > dt+1) {
			t.Errorf("previews on: the previews' record was read %d times in %d ticks, want one a tick", previews, dt)
		}
	}
}

// TestClusterPreviewRecordChecked: the group's record of previews is data
// from storage: a release name that would leave the preview's folder, or a
// host this node's template does not make, is not followed.
func TestClusterPreviewRecordChecked(t *testing.T) {
	g := newGroup(t)
	c1 := g.remote.commit(map[string]string{"index.html": "main"})
	ca := g.previewNode("a")
	a := start(t, ca)
	g.waitServing(c1, a)
	x := previewIndex{Version: recordVersion, Previews: []groupPreview{
		{Number: 5, Host: "pr-5.preview.test", Release: &liveRecord{Release: "..", Commit: c1, Digest: "sha256:00",
			Archive: "github_webhook/clusters/blog/previews/5/archives/...tar.zst"}},
		{Number: 6, Host: "evil.example", Release: &liveRecord{Release: "r6", Commit: c1, Digest: "sha256:00",
			Archive: "github_webhook/clusters/blog/previews/6/archives/r6.tar.zst"}},
	}}
	b, err := json.Marshal(x)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.storage.Store(context.Background(), "github_webhook/clusters/blog/previews-live", b); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both records refused", func() bool {
		return a.logs.FilterMessage("not following the group's record of a preview").Len() >= 2
	})
	if a.previewOf(5) != nil || a.previewOf(6) != nil || a.PreviewHost("evil.example") {
		t.Error("a refused record made a preview")
	}
	for _, name := range []string{"pr-5.preview.test", "evil.example"} {
		if _, err := os.Stat(filepath.Join(ca.Path, previewsName, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("a folder for a refused record: %s (%v)", name, err)
		}
	}
}

// BenchmarkClusterWatchPreviews is BenchmarkClusterWatch for a node of a
// converged group of three, with previews off and on (with one preview
// shared): the storage calls of one watch, what a node makes every 2 s at
// idle.
//
//	go test -run '^$' -bench ClusterWatchPreviews -benchtime 300x ./deployer
func BenchmarkClusterWatchPreviews(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run("previews="+strconv.FormatBool(on), func(b *testing.B) {
			g := &sharedGroup{t: nil, dir: filepath.Join(b.TempDir(), "storage"), remote: newRemote(b)}
			g.storage = &certmagic.FileStorage{Path: g.dir}
			tip := g.remote.commit(map[string]string{"index.html": "v1"})
			var nodes []*target
			var counted *countingStorage
			for _, id := range []string{"a", "b", "c"} {
				var s Storage = g.storage
				if id == "a" {
					counted = &countingStorage{Storage: s}
					s = counted
				}
				cfg := Config{Path: filepath.Join(b.TempDir(), id), Remote: g.remote.bare, Branch: "main",
					Cluster: &Cluster{Name: "blog", Node: id, Storage: s, Poll: time.Hour}}
				if on {
					cfg.Previews = &Previews{Host: "pr-{number}.preview.test"}
				}
				nodes = append(nodes, start(b, cfg))
			}
			for _, n := range nodes {
				n.waitLive(tip)
			}
			a := nodes[0]
			if on {
				head := g.remote.PullRequest(7, "pr", map[string]string{"index.html": "pr 7"})
				nodes[1].PullRequest(PullRequest{Number: 7, Action: "opened", Head: head})
				nodes[1].waitPreview(7, PreviewLive, head)
				waitFor(b, "a follows the preview", func() bool {
					a.watchGroup()
					p := a.previewOf(7)
					return p != nil && p.Live == head
				})
			}
			waitFor(b, "a sees the group converged", func() bool {
				a.watchGroup()
				cs := a.Status().Cluster
				return cs.Converged && len(cs.Nodes) == 3
			})
			counted.loads.Store(0)
			counted.lists.Store(0)
			counted.stores.Store(0)
			b.ResetTimer()
			for b.Loop() {
				a.watchGroup()
			}
			n := float64(b.N)
			b.ReportMetric(float64(counted.loads.Load())/n, "loads/watch")
			b.ReportMetric(float64(counted.lists.Load())/n, "lists/watch")
			b.ReportMetric(float64(counted.stores.Load())/n, "stores/watch")
		})
	}
}

// TestClusterPreviewRemovedWhileDown: a node that was down while a preview
// was removed, and whose tombstone is gone since, removes at its start the
// preview it had from the group, since the group no longer lists it.
func TestClusterPreviewRemovedWhileDown(t *testing.T) {
	g := newGroup(t)
	c1 := g.remote.commit(map[string]string{"index.html": "main"})
	ca, cb := g.previewNode("a"), g.previewNode("b")
	a, b := start(t, ca), start(t, cb)
	g.waitServing(c1, a, b)
	head := g.remote.PullRequest(2, "pr", map[string]string{"index.html": "pr 2"})
	a.PullRequest(PullRequest{Number: 2, Action: "opened", Head: head})
	g.waitPreviewEverywhere(2, head, a, b)
	b.close()
	a.PullRequest(PullRequest{Number: 2, Action: "closed"})
	waitFor(t, "a's preview removed", func() bool { return a.previewOf(2) == nil })
	// A day later, the tombstone is gone.
	a.close()
	if err := g.storage.Store(context.Background(), "github_webhook/clusters/blog/previews-live", []byte(`{"version":1,"previews":[]}`)); err != nil {
		t.Fatal(err)
	}
	if got := previewFile(t, cb.Path, "pr-2.preview.test", "index.html"); got != "pr 2" {
		t.Fatalf("b's folder before its start serves %q", got)
	}
	b2 := start(t, cb)
	waitFor(t, "b's preview removed at its start", func() bool {
		_, err := os.Stat(filepath.Join(cb.Path, previewsName, "pr-2.preview.test"))
		return b2.previewOf(2) == nil && errors.Is(err, fs.ErrNotExist)
	})
}
