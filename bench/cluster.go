package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// clusterNodes is how many Caddy processes the cluster scenario runs.
const clusterNodes = 3

// cluster measures DESIGN.md's "Several nodes": three Caddy processes, each
// with its own instance id, ports and deploy folder, share one
// `storage file_system` folder and the group `cluster bench`, with the
// default poll (2 s). For one-file changes of a 2,000-file site without a
// build, each delivered to the first node, it measures the time from the
// delivery to the change served by each node: to the last node, and the
// spread between the first and the last. Every push must be served by all
// three nodes and built once in the group (deploys_total{result="ok"}
// summed over the nodes). A follower's lag is the wait for its next read of
// the group's live record (up to the poll) and the follow itself, reported
// apart.
func (r *run) cluster() error {
	nfiles, rounds := 2000, 20
	if r.short {
		nfiles, rounds = 200, 3
	}
	dir, err := r.mkdir("cluster")
	if err != nil {
		return err
	}
	repo, err := testkit.NewRepo(dir, benchBranch)
	if err != nil {
		return err
	}
	prev, err := repo.Commit("version 0", plainSite(nfiles))
	if err != nil {
		return err
	}
	storage := filepath.Join(dir, "storage")
	var nodes []*caddyProc
	var sites []*site
	defer func() {
		for _, p := range nodes {
			p.stop()
		}
	}()
	for i := range clusterNodes {
		ndir, err := r.mkdir(fmt.Sprintf("cluster/node-%d", i))
		if err != nil {
			return err
		}
		ports, err := testkit.FreePorts(1)
		if err != nil {
			return err
		}
		s := &site{path: filepath.Join(ndir, "site"), port: ports[0], remote: "file://" + repo.Bare,
			extra: []string{"cluster bench"}}
		p, err := r.startNode(ndir, storage, s)
		if err != nil {
			return err
		}
		nodes, sites = append(nodes, p), append(sites, s)
	}
	for i, s := range sites {
		if _, err := waitLive(s.path, prev, time.Minute); err != nil {
			return fmt.Errorf("node %d at start: %w", i, err)
		}
	}

	var toFirst, toLast, spread, follow []time.Duration
	converged := 0
	for i := 1; i <= rounds; i++ {
		name, marker := pageName(i), fmt.Sprintf("round %d %s", i, testkit.DeliveryID())
		sha, err := repo.Commit("change "+name, map[string]string{name: page(i, marker)})
		if err != nil {
			return err
		}
		want := "<p id=marker>" + marker + "</p>"
		start := time.Now()
		if d := r.push(sites[0], prev, sha); d.err != nil {
			return d.err
		}
		live := make([]time.Duration, len(sites))
		errs := make([]error, len(sites))
		var wg sync.WaitGroup
		for j, s := range sites {
			wg.Go(func() { live[j], errs[j] = waitServed(s.url("/"+name), want, start, time.Minute) })
		}
		wg.Wait()
		for j, err := range errs {
			if err != nil {
				r.logf("round %d: node %d: %v", i, j, err)
			}
		}
		if slices.ContainsFunc(errs, func(e error) bool { return e != nil }) {
			continue
		}
		converged++
		for _, p := range nodes[1:] {
			if st, err := p.status(); err == nil && st.Last != nil && st.Last.Reason == "group" && st.Last.Commit == sha {
				follow = append(follow, time.Duration(st.Last.Duration))
			}
		}
		first, last := slices.Min(live), slices.Max(live)
		toFirst, toLast, spread = append(toFirst, first), append(toLast, last), append(spread, last-first)
		r.logf("round %d: live on the nodes after %v", i, live)
		prev = sha
	}

	// One build per commit in the group: the start-up's and one per push.
	// A node counts a follow just after it switches, so the last round's
	// counts are waited for (up to 10 s) rather than read at once.
	var ok, followed float64
	wantOK, wantFollowed := float64(rounds+1), float64((clusterNodes-1)*(rounds+1))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ok, followed = 0, 0
		for _, p := range nodes {
			v, err := p.metric("caddy_github_webhook_deploys_total", map[string]string{"result": "ok"})
			if err != nil {
				return err
			}
			ok += v
			if v, err = p.metric("caddy_github_webhook_deploys_total", map[string]string{"result": "followed"}); err != nil {
				return err
			}
			followed += v
		}
		if (ok >= wantOK && followed >= wantFollowed) || time.Now().After(deadline) {
			break
		}
	}
	slices.Sort(toFirst)
	slices.Sort(toLast)
	slices.Sort(spread)
	slices.Sort(follow)
	r.rep.info("site", fmt.Sprintf("%d nodes, one `storage file_system` folder, default poll; %d files of 2 KiB, no build; %d one-file changes delivered to one node", clusterNodes, nfiles, rounds))
	r.rep.check("pushes served by all three nodes", fmt.Sprintf("%d of %d", converged, rounds), fmt.Sprint(rounds), converged == rounds)
	r.rep.check("builds in the group (deploys_total{result=ok}, summed)", fmt.Sprint(ok), fmt.Sprint(wantOK), ok == wantOK)
	r.rep.check("follows (deploys_total{result=followed}, summed)", fmt.Sprint(followed), fmt.Sprint(wantFollowed), followed == wantFollowed)
	if converged == 0 {
		return nil
	}
	r.rep.info("delivery → first node serves the change: median / max", pair(toFirst))
	r.rep.perf("delivery → last node serves the change: median / max", pair(toLast), "max ≤ 3 s", toLast[len(toLast)-1] <= 3*time.Second)
	if len(follow) > 0 {
		r.rep.info("a follow (read the archive, check its digest, unpack, switch), from the status: median / max", pair(follow))
	}
	r.rep.perf("first node → last node: median / max", pair(spread), "max ≤ 1 s", spread[len(spread)-1] <= time.Second)
	return nil
}

// pair formats the median and the maximum of sorted durations.
func pair(d []time.Duration) string {
	return fmt.Sprintf("%v / %v", pct(d, 50).Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond))
}

// waitServed GETs url every 2 ms until its body holds want, and returns the
// time since start then.
func waitServed(url, want string, start time.Time, timeout time.Duration) (time.Duration, error) {
	for {
		status, body, err := get(url)
		if err == nil && status == 200 && strings.Contains(string(body), want) {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout {
			return 0, fmt.Errorf("%s does not serve the change after %v: %d %v", url, timeout, status, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// startNode is run.startCaddy for a node of a group: the Caddyfile adds the
// global `storage file_system <storage>`, and the node has its own HOME and
// XDG folders under dir, so its own caddy.InstanceID (the node's id). It
// returns once the node's admin endpoint listens.
func (r *run) startNode(dir, storage string, s *site) (*caddyProc, error) {
	home := filepath.Join(dir, "home")
	env := []string{"HOME=" + home,
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"XDG_DATA_HOME=" + filepath.Join(home, ".local", "share"),
		"XDG_CACHE_HOME=" + filepath.Join(home, ".cache")}
	return r.launch(dir, s, "storage file_system "+storage, env, nil)
}
