package deployer

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// markMoved writes an ended build lease of node, as a node does after it
// moved live (see markLiveMoved): the watches then read live.
func (g *sharedGroup) markMoved(node string) {
	g.t.Helper()
	now := time.Now()
	b, _ := json.Marshal(buildingRecord{Version: recordVersion, Node: node, Since: now, Ended: now})
	if err := g.storage.Store(context.Background(), "github_webhook/clusters/blog/building", b); err != nil {
		g.t.Fatal(err)
	}
}

// leaseRecord is the group's build lease as stored; zero when none.
func (g *sharedGroup) leaseRecord() buildingRecord {
	g.t.Helper()
	var rec buildingRecord
	b, err := g.storage.Load(context.Background(), "github_webhook/clusters/blog/building")
	if err == nil {
		err = json.Unmarshal(b, &rec)
	}
	if err != nil {
		g.t.Fatalf("reading the build lease: %v", err)
	}
	return rec
}

// readCounter counts the loads of the group's live record and build
// lease, and the lists, through a real storage.
type readCounter struct {
	Storage
	live, building, other, lists atomic.Int64
}

func (c *readCounter) Load(ctx context.Context, key string) ([]byte, error) {
	switch {
	case strings.HasSuffix(key, "/live"):
		c.live.Add(1)
	case strings.HasSuffix(key, "/building"):
		c.building.Add(1)
	default:
		c.other.Add(1)
	}
	return c.Storage.Load(ctx, key)
}

func (c *readCounter) List(ctx context.Context, path string, recursive bool) ([]string, error) {
	c.lists.Add(1)
	return c.Storage.List(ctx, path, recursive)
}

// reads is what c counted.
type reads struct{ live, building, other, lists int64 }

func (c *readCounter) snapshot() reads {
	return reads{c.live.Load(), c.building.Load(), c.other.Load(), c.lists.Load()}
}

func (r reads) minus(o reads) reads {
	return reads{r.live - o.live, r.building - o.building, r.other - o.other, r.lists - o.lists}
}

// A follower reads one record per tick of its watch while nobody builds,
// the build lease, and never live (before, live: as many reads); while
// another node holds the lease, it reads live at the fast interval (here
// 5 ms against a poll of 200 ms), several times per read of the lease,
// and follows the builder's release while the builder still holds the
// lease; once the lease ends, it is back to one read of the lease per
// tick; the interval a tick chooses is the fast one exactly while another
// node holds the lease. Counted through a real file storage, at the
// watch's own ticks (WithFault's FaultWatch), never by the clock.
func TestClusterWatchFastOnlyDuringALease(t *testing.T) {
	g := newGroup(t)
	c1 := g.remote.commit(map[string]string{"index.html": "v1"})

	// a builds; it can be held after its live record is stored, lease
	// held, before the lease ends.
	var hold atomic.Bool
	held, goOn := make(chan struct{}), make(chan struct{})
	var once, unblock sync.Once
	letGo := func() { unblock.Do(func() { close(goOn) }) }
	aCfg := g.config("a", filepath.Join(t.TempDir(), "a"))
	aCfg.Cluster.Poll = time.Hour
	a := start(t, aCfg, WithFault(func(step, _ string) {
		if step == FaultStored && hold.Load() {
			once.Do(func() { close(held); <-goOn })
		}
	}))
	g.waitServing(c1, a)
	t.Cleanup(letGo) // before a closes: cleanups run last first

	// b follows, counting its reads and its watch's ticks.
	count := &readCounter{Storage: g.storage}
	bCfg := g.config("b", filepath.Join(t.TempDir(), "b"))
	bCfg.Cluster.Storage = count
	bCfg.Cluster.Poll = 200 * time.Millisecond
	// At each tick, before its reads, what b had read so far.
	var mu sync.Mutex
	var at []reads
	b := start(t, bCfg, withFastWatch(5*time.Millisecond), WithFault(func(step, _ string) {
		if step == FaultWatch {
			mu.Lock()
			at = append(at, count.snapshot())
			mu.Unlock()
		}
	}))
	g.waitServing(c1, b)

	// readsOver counts b's reads over its next n ticks.
	readsOver := func(n int) reads {
		t.Helper()
		mu.Lock()
		from := len(at)
		mu.Unlock()
		var r reads
		waitFor(t, "the watch ticking", func() bool {
			mu.Lock()
			defer mu.Unlock()
			if len(at) < from+1+n {
				return false
			}
			r = at[from+n].minus(at[from])
			return true
		})
		return r
	}

	// c's watch never ticks on its own: the test ticks it and reads the
	// interval it chooses.
	cCfg := g.config("c", filepath.Join(t.TempDir(), "c"))
	cCfg.Cluster.Poll = time.Hour
	c := start(t, cCfg, withFastWatch(5*time.Millisecond))
	g.waitServing(c1, c)
	if next := c.watchTick(); next != time.Hour {
		t.Errorf("idle, the watch waits %s, want the poll, 1h", next)
	}

	readsOver(2) // its first ticks read live: what it knows starts there
	idle := readsOver(10)
	if idle.live != 0 || idle.building > 10 {
		t.Errorf("idle, 10 ticks: %d reads of live and %d of the lease, want 0 and at most 10", idle.live, idle.building)
	}

	hold.Store(true)
	c2 := g.remote.commit(map[string]string{"index.html": "v2"})
	a.Wake(ReasonDelivery)
	select {
	case <-held:
	case <-time.After(60 * time.Second):
		t.Fatal("a never stored its release")
	}
	// b follows while a holds the lease.
	g.waitServing(c2, b)
	if got, want := liveRelease(b.path), g.live().Release; got != want {
		t.Errorf("b serves release %s, the group's live record names %s", got, want)
	}
	during := readsOver(20)
	if during.live < 3*during.building || during.building == 0 {
		t.Errorf("during a lease, 20 ticks: %d reads of live, %d of the lease; want live read several times per read of the lease",
			during.live, during.building)
	}
	if next := c.watchTick(); next != 5*time.Millisecond {
		t.Errorf("during another node's lease, the watch waits %s, want the fast interval, 5ms", next)
	}
	if got, want := liveRelease(c.path), g.live().Release; got != want {
		t.Errorf("c serves release %s after a tick during the lease, the group's live record names %s", got, want)
	}
	letGo()
	waitFor(t, "c's watch slow again once the lease ended", func() bool { return c.watchTick() == time.Hour })
	// Back to slow once b has seen the lease end.
	waitFor(t, "b saw the lease end", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return !b.group.fast && !b.group.lease.Ended.IsZero()
	})
	after := readsOver(10)
	if after.live != 0 || after.building > 10 {
		t.Errorf("after the lease, 10 ticks: %d reads of live and %d of the lease, want 0 and at most 10", after.live, after.building)
	}
}
