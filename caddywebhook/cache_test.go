package caddywebhook

import (
	"path/filepath"
	"slices"
	"testing"
)

// TestCacheThroughCaddy loads a Caddyfile with two cache lines: the second
// deploy, woken by a signed push, serves what its build found in the cache
// folder, which is what the first build wrote there; the build's
// XDG_CACHE_HOME is under the site's path.
func TestCacheThroughCaddy(t *testing.T) {
	s := newTestSite(t)
	c1 := s.repo.Commit("first", map[string]string{"index.html": "one"})
	s.start(s.caddyfile("command sh -c `mkdir -p gen; cat gen/log > seen.txt 2>/dev/null || : > seen.txt; " +
		"echo $DEPLOY_COMMIT >> gen/log; printf %s \"$XDG_CACHE_HOME\" > xdg.txt`\n" +
		"cache gen\n" +
		"cache other/a other/b"))
	s.waitLive(c1)
	if got := get(t, siteURL+"/seen.txt"); got != "" {
		t.Errorf("the first build found %q in its cache folder, want nothing", got)
	}

	c2 := s.repo.Commit("second", map[string]string{"index.html": "two"})
	pushDelivery(t, testSecret)
	s.waitLive(c2)
	if got := get(t, siteURL+"/seen.txt"); got != c1+"\n" {
		t.Errorf("the second build found %q in its cache folder gen, want the first build's %q", got, c1+"\n")
	}
	if got, want := get(t, siteURL+"/xdg.txt"), filepath.Join(s.path, "cache", "xdg"); got != want {
		t.Errorf("XDG_CACHE_HOME = %q, want %q", got, want)
	}
}

// TestCacheConfig: the handler hands the deployer its cache folders, in
// the order written.
func TestCacheConfig(t *testing.T) {
	h := &Handler{Cache: []string{"resources/_gen", "node_modules"}}
	if got := h.deployerConfig("").Cache; !slices.Equal(got, h.Cache) {
		t.Errorf("deployer's cache %q, want %q", got, h.Cache)
	}
}
