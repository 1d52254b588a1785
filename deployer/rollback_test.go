package deployer

import (
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
