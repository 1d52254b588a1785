package deployer

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// panicOnce is a fault that panics the first time step comes, with msg.
func panicOnce(step, msg string) (Option, *atomic.Int32) {
	var n atomic.Int32
	return WithFault(func(s, _ string) {
		if s == step && n.Add(1) == 1 {
			panic(msg)
		}
	}), &n
}

// A panic inside a deploy (here once the release is built, before it is
// synced and goes live) is recovered by the worker: the live site stays,
// the target is marked failed with the panic's message, the half-built
// release is removed, the panic is logged with its stack, poll leaves the
// tip alone as after a failed build, and the next delivery deploys it. On
// main the panic ended the process, and every site Caddy served.
func TestPanicInDeployIsRecovered(t *testing.T) {
	r := newRemote(t)
	first := r.commit(map[string]string{"index.html": "v1"})
	var armed atomic.Bool
	var panics atomic.Int32
	fault := WithFault(func(step, _ string) {
		if step == FaultSync && armed.Load() && panics.Add(1) == 1 {
			panic("boom in the deploy")
		}
	})
	path := filepath.Join(t.TempDir(), "site")
	tg := start(t, Config{Path: path, Remote: r.bare}, fault)
	tg.waitLive(first)

	armed.Store(true)
	tip := r.commit(map[string]string{"index.html": "v2"})
	c := tg.wake(ReasonDelivery)
	if c.Outcome != OutcomeFailed || c.Commit != tip || !strings.Contains(c.Detail, "boom in the deploy") {
		t.Fatalf("checked after the panic: %+v", c)
	}
	s := tg.Status()
	if s.Last == nil || s.Last.Result != "error" || !strings.Contains(s.Last.Error, "panicked: boom in the deploy") || s.Last.Commit != tip {
		t.Errorf("last after the panic: %+v", s.Last)
	}
	if got := readCurrent(t, path, "index.html"); got != "v1" {
		t.Errorf("served %q after the panic, want v1", got)
	}
	if dirs := releaseDirs(t, path); len(dirs) != 1 {
		t.Errorf("release folders after the panic: %v, want the live one alone", dirs)
	}
	logged := tg.logs.FilterMessage("panicked").All()
	if len(logged) != 1 {
		t.Fatalf("%d panicked entries logged, want 1", len(logged))
	}
	fields := logged[0].ContextMap()
	if fmt.Sprint(fields["panic"]) != "boom in the deploy" || !strings.Contains(fmt.Sprint(fields["stack"]), "deployer.(*Deployer).publish") {
		t.Errorf("panicked entry: %v", fields)
	}
	if n := tg.events.count(EventFailed); n != 1 {
		t.Errorf("%d failed events, want 1", n)
	}

	if c := tg.wake(ReasonPoll); c.Outcome != OutcomeWaiting || c.Commit != tip {
		t.Errorf("poll after the panic: %+v, want waiting: failed before", c)
	}
	if c := tg.wake(ReasonDelivery); c.Outcome != OutcomeDeployed || c.Commit != tip {
		t.Fatalf("the delivery after the panic: %+v", c)
	}
	if got := readCurrent(t, path, "index.html"); got != "v2" {
		t.Errorf("served %q, want v2", got)
	}
}

// A panic in the worker's turn before the deploy proper (here as it
// begins) is recovered too, and the worker goes on with the next wake.
func TestPanicAtDeployStartIsRecovered(t *testing.T) {
	r := newRemote(t)
	tip := r.commit(map[string]string{"index.html": "v1"})
	fault, n := panicOnce(FaultDeploy, "boom at start")
	tg := start(t, Config{Remote: r.bare}, fault)
	waitFor(t, "the panic recovered", func() bool {
		c := tg.Status().Checked
		return c != nil && c.Outcome == OutcomeFailed && strings.Contains(c.Detail, "boom at start")
	})
	if c := tg.wake(ReasonDelivery); c.Outcome != OutcomeDeployed || c.Commit != tip {
		t.Fatalf("the delivery after the panic: %+v", c)
	}
	if n.Load() < 2 {
		t.Errorf("the fault was reached %d times", n.Load())
	}
}

// A panic while a node watches its group is recovered: the node goes on
// watching, and deploys and follows as before. On main it ended the
// process.
func TestClusterPanicInWatchIsRecovered(t *testing.T) {
	g := newGroup(t)
	c1 := g.remote.commit(map[string]string{"index.html": "v1"})
	fault, n := panicOnce(FaultWatch, "boom in the watch")
	a := start(t, g.config("a", filepath.Join(t.TempDir(), "a")), fault)
	g.waitServing(c1, a)
	waitFor(t, "the watch panicked", func() bool { return n.Load() >= 1 })
	waitFor(t, "the watch going on", func() bool { return n.Load() >= 3 })
	if got := a.logs.FilterMessage("panicked").Len(); got != 1 {
		t.Errorf("%d panicked entries logged, want 1", got)
	}
	b := start(t, g.config("b", filepath.Join(t.TempDir(), "b")))
	g.waitServing(c1, a, b)
	c2 := g.remote.commit(map[string]string{"index.html": "v2"})
	if got := wakeFor(b, ReasonDelivery); got.Outcome != OutcomeDeployed || got.Commit != c2 {
		t.Fatalf("b's delivery: %+v", got)
	}
	g.waitServing(c2, a, b)
}
