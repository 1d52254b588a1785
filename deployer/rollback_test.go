package deployer

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

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
	_, err := tg.Rollback(old.Release)
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
	if _, err := tg.Rollback(""); !errors.Is(err, ErrNoOlderRelease) {
		t.Errorf("rollback with one release = %v, want ErrNoOlderRelease", err)
	}
	c2 := r.commit(map[string]string{"index.html": "v2"})
	tg.Wake(ReasonDelivery)
	tg.waitLive(c2)
	if _, err := tg.Rollback("no-such-release"); !errors.Is(err, ErrUnknownRelease) {
		t.Errorf("rollback to an unknown release = %v", err)
	}
	live, err := tg.Rollback("")
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
