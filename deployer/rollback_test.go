package deployer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

// slowArchives is the group's storage (certmagic's FileStorage) with the
// writes of archives held until release is closed, or the write's context
// ends; started says one is held.
type slowArchives struct {
	*certmagic.FileStorage
	started chan struct{}
	release chan struct{}
}

func (s *slowArchives) Store(ctx context.Context, key string, value []byte) error {
	if strings.Contains(key, "/archives/") {
		select {
		case s.started <- struct{}{}:
		default:
		}
		select {
		case <-s.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.FileStorage.Store(ctx, key, value)
}

// A rollback in a group packs and stores the release's archive before it
// takes the disk lock: a deploy's switch is not held up meanwhile (on main
// the lock was held while the whole site was packed and stored). The
// rollback's context bounds it: a request that goes away ends it, and the
// site stays as it was.
func TestRollbackPacksOutsideTheDiskLock(t *testing.T) {
	g := newGroup(t)
	c1 := g.remote.commit(map[string]string{"index.html": "v1"})
	a := g.node("a")
	g.waitServing(c1, a)
	c2 := g.remote.commit(map[string]string{"index.html": "v2"})
	if got := a.wake(ReasonDelivery); got.Outcome != OutcomeDeployed {
		t.Fatalf("a's delivery: %+v", got)
	}
	g.waitServing(c2, a)

	slow := &slowArchives{FileStorage: g.storage, started: make(chan struct{}, 1), release: make(chan struct{})}
	cfg := a.config()
	cl := *cfg.Cluster
	cl.Storage = slow
	cfg.Cluster = &cl
	if err := a.Update(cfg); err != nil {
		t.Fatal(err)
	}

	// A rollback whose request goes away while the archive is stored.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := a.Rollback(ctx, "")
		done <- err
	}()
	select {
	case <-slow.started:
	case <-time.After(30 * time.Second):
		t.Fatal("the rollback never stored an archive")
	}
	if !a.diskMu.TryLock() {
		t.Fatal("the disk lock is held while the rollback stores the archive")
	}
	a.diskMu.Unlock()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("rollback after its context ended: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the rollback went on after its context ended")
	}
	if got := readCurrent(t, filepath.Join(a.path), "index.html"); got != "v2" {
		t.Errorf("served %q after the cancelled rollback, want v2", got)
	}

	// The same rollback, let through, goes live in the group.
	close(slow.release)
	live, err := a.Rollback(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if live.Commit != c1 || g.live().Commit != c1 {
		t.Errorf("rolled back to %+v, the group's live record %+v; want %s", live, g.live(), short(c1))
	}
}

// 1. Rolling back checks the target's links again: a release that gained an
// escaping link on disk does not go live.
func TestRollbackRefusesEscapingLink(t *testing.T) {
	r := newRemote(t)
	first := r.commit(map[string]string{"index.html": "v1"})
	tg := start(t, Config{Remote: r.bare})
	old := tg.waitLive(first).Live
	tip := r.commit(map[string]string{"index.html": "v2"})
	tg.Wake(ReasonDelivery)
	live := tg.waitLive(tip).Live

	os.Symlink("../../state.json", filepath.Join(tg.path, "releases", old.Release, "state.json"))
	_, err := tg.Rollback(t.Context(), old.Release)
	if err == nil || !strings.Contains(err.Error(), `"state.json" -> "../../state.json"`) {
		t.Fatalf("Rollback = %v, want an error naming the link", err)
	}
	assertLiveUnchanged(t, tg, live, "v2", "state.json")
}

// A rollback pins: start-up and poll leave the commit rolled back from
// alone, also after a restart; a delivery deploys it again.
func TestRollbackPinSurvivesRestart(t *testing.T) {
	r := newRemote(t)
	path := filepath.Join(t.TempDir(), "site")
	c1 := r.commit(map[string]string{"index.html": "v1"})
	tg := start(t, Config{Path: path, Remote: r.bare})
	tg.waitLive(c1)
	if _, err := tg.Rollback(t.Context(), ""); !errors.Is(err, ErrNoOlderRelease) {
		t.Errorf("rollback with one release = %v, want ErrNoOlderRelease", err)
	}
	c2 := r.commit(map[string]string{"index.html": "v2"})
	tg.Wake(ReasonDelivery)
	tg.waitLive(c2)
	if _, err := tg.Rollback(t.Context(), "no-such-release"); !errors.Is(err, ErrUnknownRelease) {
		t.Errorf("rollback to an unknown release = %v", err)
	}
	live, err := tg.Rollback(t.Context(), "")
	if err != nil || live.Commit != c1 {
		t.Fatalf("Rollback = %+v, %v", live, err)
	}
	if ev, ok := tg.events.last(EventRolledBack); !ok || ev.Commit != c1 {
		t.Errorf("rolled back event = %+v", ev)
	}
	if got := readCurrent(t, path, "index.html"); got != "v1" {
		t.Fatalf("served %q after rollback", got)
	}
	tg.close()

	tg2 := start(t, Config{Path: path, Remote: r.bare})
	if c := tg2.waitChecked(0); c.Outcome != OutcomeWaiting || c.Detail != "rolled back from" || c.Commit != c2 {
		t.Errorf("start-up on a pinned tip: checked = %+v, want waiting (rolled back from) %s", c, short(c2))
	}
	if c := tg2.wake(ReasonPoll); c.Outcome != OutcomeWaiting || c.Detail != "rolled back from" || c.Commit != c2 {
		t.Errorf("poll on a pinned tip: checked = %+v, want waiting (rolled back from) %s", c, short(c2))
	}
	if s := tg2.Status(); s.Live.Commit != c1 || tg2.events.count(EventStarted) != 0 {
		t.Fatalf("start-up or poll undid the rollback: live %s, %d deploys", s.Live.Commit, tg2.events.count(EventStarted))
	}
	tg2.Wake(ReasonDelivery)
	tg2.waitLive(c2)
	if got := readCurrent(t, path, "index.html"); got != "v2" {
		t.Errorf("served %q after a delivery", got)
	}
}
