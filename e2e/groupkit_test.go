package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/deployer"
	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// The harness of the tests of DESIGN.md's "Several nodes": a group of Caddy
// processes on 127.0.0.1, each with its own ports, admin endpoint, HOME and
// XDG folders (so its own caddy.InstanceID, the node's id) and deploy
// folder, all with the same global `storage file_system <folder>` and the
// same `cluster` name, deploying one bare remote.

// groupName is the cluster name of every test group.
const groupName = "e2e"

// groupBuild is the build script committed in every group's remote. Each
// run appends "<commit> start" to $BUILDS (a file outside every release),
// then, for a commit holding the file "hold", writes its process id to
// $PID_DIR/build.pid and waits until $PID_DIR/go exists; then it publishes
// index.html and a build.txt that no other run writes alike (the commit, the
// time in nanoseconds and the process id), and appends "<commit> done". Two
// nodes that serve the same build.txt serve the bytes of one build.
const groupBuild = `#!/bin/sh
set -e
echo "$DEPLOY_COMMIT start" >> "$BUILDS"
if [ -f hold ]; then
	echo $$ > "$PID_DIR/build.tmp" && mv "$PID_DIR/build.tmp" "$PID_DIR/build.pid"
	until [ -e "$PID_DIR/go" ]; do sleep 0.05; done
fi
mkdir -p public
cp index.html public/index.html
printf '%s %s %s\n' "$DEPLOY_COMMIT" "$(date +%s%N)" "$$" > public/build.txt
echo "$DEPLOY_COMMIT done" >> "$BUILDS"
`

// groupPoll is how often the tests' nodes read the group's live record
// (cluster_poll; 2 s by default).
const groupPoll = "200ms"

// group is a set of Caddy nodes sharing one storage folder.
type group struct {
	t       *testing.T
	storage string // the shared storage folder (file_system)
	remote  *testkit.Remote
	builds  string // the file every build appends to
	pidDir  string // where a held build writes its pid; "go" there releases it
	nodes   []*node
}

// node is one Caddy of a group.
type node struct {
	*site
	g      *group
	name   string   // "a", "b", "c": for messages
	env    []string // its own HOME and XDG folders: its own instance id
	config string   // its Caddyfile
	proc   *caddyProc
}

// newGroup makes a remote holding the plain HTML site and the build script,
// and n nodes (not started) deploying it through one storage folder.
func newGroup(t *testing.T, n int) *group {
	t.Helper()
	g := &group{
		t:       t,
		storage: filepath.Join(t.TempDir(), "storage"),
		remote:  newRemote(t, "html"),
		builds:  filepath.Join(t.TempDir(), "builds"),
		pidDir:  t.TempDir(),
	}
	g.remote.Commit("Add the build script", map[string]string{"build.sh": groupBuild})
	for i := range n {
		name := string(rune('a' + i))
		nd := &node{site: newSite(t, "site-"+name), g: g, name: name, env: home(t)}
		nd.config = filepath.Join(t.TempDir(), "Caddyfile")
		if err := os.WriteFile(nd.config, []byte(nd.caddyfile()), 0o644); err != nil {
			t.Fatal(err)
		}
		g.nodes = append(g.nodes, nd)
	}
	return g
}

// caddyfile is the node's configuration: the shared storage, its own admin
// endpoint and site, and the group's target.
func (n *node) caddyfile() string {
	return fmt.Sprintf(`{
	admin %s
	storage file_system %s
}

http://127.0.0.1:%d {
	root * %s/current
	file_server

	github_webhook /_github {
		repo octocat/site
		secret {env.GITHUB_WEBHOOK_SECRET}
		path %s
		branch main
		remote %s
		command sh build.sh
		publish public
		env BUILDS %s
		env PID_DIR %s
		timeout 5m
		cluster %s
		cluster_poll %s
	}
}
`, n.admin, n.g.storage, n.port, n.path, n.path, n.g.remote.Bare, n.g.builds, n.g.pidDir, groupName, groupPoll)
}

// start runs the node's Caddy (again, after a stop: same folders, same id).
func (n *node) start() {
	n.g.t.Helper()
	n.proc = runCaddy(n.g.t, n.site, n.config, n.env)
}

// startAll starts every node, one after another without waiting for a
// deploy: their start-up wakes meet at the group's build lock.
func (g *group) startAll() {
	g.t.Helper()
	for _, n := range g.nodes {
		n.start()
	}
}

// running returns the nodes whose Caddy runs.
func (g *group) running() []*node {
	var out []*node
	for _, n := range g.nodes {
		if n.proc != nil {
			select {
			case <-n.proc.Done():
			default:
				out = append(out, n)
			}
		}
	}
	return out
}

// groupLive is the group's live record (JSON of deployer.GroupLive).
type groupLive struct {
	Commit     string    `json:"commit"`
	Release    string    `json:"release"`
	Archive    string    `json:"archive"`
	Digest     string    `json:"digest"`
	Size       int64     `json:"size"`
	Node       string    `json:"node"`
	At         time.Time `json:"at"`
	PinnedFrom string    `json:"pinned_from"`
}

// nodeRecord is what one node says it serves (JSON of deployer.NodeStatus).
type nodeRecord struct {
	Node      string    `json:"node"`
	Host      string    `json:"host"`
	Commit    string    `json:"commit"`
	Release   string    `json:"release"`
	Since     time.Time `json:"since"`
	Updated   time.Time `json:"updated"`
	Converged bool      `json:"converged"`
	Self      bool      `json:"self"`
}

// clusterView is the "cluster" key of a target's status (JSON of
// deployer.ClusterStatus). The tests decode the JSON the admin API answers,
// as a user's script would, rather than the Go type.
type clusterView struct {
	Name          string       `json:"name"`
	Node          string       `json:"node"`
	Live          *groupLive   `json:"live"`
	Nodes         []nodeRecord `json:"nodes"`
	Converged     bool         `json:"converged"`
	Behind        float64      `json:"behind"`
	Error         string       `json:"error"`
	StorageErrors int          `json:"storage_errors"`
	ReadAt        time.Time    `json:"read_at"`
}

// nodeStatus is a target's status with its cluster key.
type nodeStatus struct {
	deployer.Status
	Cluster *clusterView `json:"cluster"`
}

// status returns the node's status from its admin API.
func (n *node) status() nodeStatus {
	t := n.g.t
	t.Helper()
	st, err := n.tryStatus()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (n *node) tryStatus() (nodeStatus, error) {
	code, body, err := get("http://" + n.admin + "/github_webhook/deploys")
	if err != nil || code != http.StatusOK {
		return nodeStatus{}, fmt.Errorf("node %s: GET /github_webhook/deploys: %d %v %s", n.name, code, err, body)
	}
	var list []nodeStatus
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		return nodeStatus{}, fmt.Errorf("node %s: decoding the deploys: %v\n%s", n.name, err, body)
	}
	for _, st := range list {
		if st.Path == n.path {
			return st, nil
		}
	}
	return nodeStatus{}, fmt.Errorf("node %s: no target %s in %s", n.name, n.path, body)
}

// id returns the node's id as its status names it.
func (n *node) id() string {
	n.g.t.Helper()
	st := n.status()
	if st.Cluster == nil || st.Cluster.Node == "" {
		n.g.t.Fatalf("node %s: no cluster in its status: %+v", n.name, st)
	}
	return st.Cluster.Node
}

// served returns the build.txt the node serves, and an error unless it
// answers 200.
func (n *node) served() (string, error) {
	code, body, err := get(n.url("/build.txt"))
	if err != nil {
		return "", err
	}
	if code != http.StatusOK {
		return body, fmt.Errorf("node %s: GET /build.txt: %d", n.name, code)
	}
	return body, nil
}

// waitServing waits until every node of nodes has commit live, runs no
// deploy, reads the group's live record at commit, and serves a build.txt
// of commit; then it checks that they all serve the same build.txt (one
// build's bytes) and returns it.
func (g *group) waitServing(commit string, nodes ...*node) string {
	g.t.Helper()
	for _, n := range nodes {
		waitUntil(g.t, time.Minute, "node "+n.name+" to serve "+commit[:12], func() error {
			st, err := n.tryStatus()
			if err != nil {
				return err
			}
			switch {
			case st.Cluster == nil:
				return fmt.Errorf("no cluster in the status: live %+v, last %+v", st.Live, st.Last)
			case st.Live == nil || st.Live.Commit != commit || st.Running != nil:
				return fmt.Errorf("live %+v, running %+v, last %+v, cluster %+v", st.Live, st.Running, st.Last, st.Cluster)
			case st.Cluster.Live == nil || st.Cluster.Live.Commit != commit:
				return fmt.Errorf("group live %+v", st.Cluster.Live)
			}
			b, err := n.served()
			if err != nil {
				return err
			}
			if !strings.HasPrefix(b, commit+" ") {
				return fmt.Errorf("serves build.txt %q", b)
			}
			return nil
		})
	}
	return g.sameBytes(nodes...)
}

// waitConverged waits until every running node's status lists every node
// of the group and says the group has converged on commit: every node
// record serves the live release.
func (g *group) waitConverged(commit string) {
	g.t.Helper()
	for _, n := range g.running() {
		waitUntil(g.t, time.Minute, "node "+n.name+" to see the group converged on "+commit[:12], func() error {
			st, err := n.tryStatus()
			if err != nil {
				return err
			}
			if c := st.Cluster; c == nil || !c.Converged || len(c.Nodes) != len(g.nodes) || c.Live == nil || c.Live.Commit != commit || c.Behind != 0 || c.Error != "" {
				return fmt.Errorf("cluster %+v", c)
			}
			return nil
		})
	}
}

// sameBytes checks that nodes serve the same build.txt and returns it.
func (g *group) sameBytes(nodes ...*node) string {
	g.t.Helper()
	var first string
	for i, n := range nodes {
		b, err := n.served()
		if err != nil {
			g.t.Fatal(err)
		}
		if i == 0 {
			first = b
		} else if b != first {
			g.t.Errorf("node %s serves build.txt %q, node %s %q: not the bytes of one build", n.name, b, nodes[0].name, first)
		}
	}
	return first
}

// buildCount returns how many builds of commit started and how many ended
// (the lines the build script appended).
func (g *group) buildCount(commit string) (started, done int) {
	g.t.Helper()
	f, err := os.Open(g.builds)
	if os.IsNotExist(err) {
		return 0, 0
	}
	if err != nil {
		g.t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		switch sc.Text() {
		case commit + " start":
			started++
		case commit + " done":
			done++
		}
	}
	return started, done
}

// requireOneBuild fails the test unless commit was built exactly once in
// the whole group.
func (g *group) requireOneBuild(commit string) {
	g.t.Helper()
	if started, done := g.buildCount(commit); started != 1 || done != 1 {
		b, _ := os.ReadFile(g.builds)
		g.t.Errorf("commit %s: %d builds started, %d ended in the group, want one:\n%s", commit[:12], started, done, b)
	}
}

// deliver sends the node a signed push delivery from before to after and
// requires 202.
func (n *node) deliver(id, before, after string) {
	n.g.t.Helper()
	code, body := deliver(n.g.t, n.hook(), secret, "push", id, pushPayload(n.g.t, "octocat/site", before, after))
	if code != http.StatusAccepted {
		n.g.t.Fatalf("node %s: push delivery: %d %s, want 202", n.name, code, body)
	}
}

// admin POSTs body to the node's admin API at p and returns the status and
// answer.
func (n *node) adminPost(p string, body any) (int, string) {
	n.g.t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		n.g.t.Fatal(err)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Post("http://"+n.admin+p, "application/json", bytes.NewReader(b))
	if err != nil {
		n.g.t.Fatalf("node %s: POST %s: %v", n.name, p, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, strings.TrimSpace(string(out))
}

// metric returns the value of the node's series name{path=<its path>,
// labels...} on the admin endpoint's /metrics, and whether it is there.
func (n *node) metric(name string, labels map[string]string) (float64, bool) {
	n.g.t.Helper()
	code, body, err := get("http://" + n.admin + "/metrics")
	if err != nil || code != http.StatusOK {
		n.g.t.Fatalf("node %s: GET /metrics: %d %v", n.name, code, err)
	}
	want := map[string]string{"path": n.path}
	for k, v := range labels {
		want[k] = v
	}
	for line := range strings.Lines(body) {
		rest, ok := strings.CutPrefix(line, name+"{")
		if !ok {
			continue
		}
		set, value, _ := strings.Cut(rest, "} ")
		found := 0
		for _, kv := range strings.Split(set, ",") {
			if k, v, _ := strings.Cut(kv, "="); want[k] != "" && strconv.Quote(want[k]) == v {
				found++
			}
		}
		if found == len(want) {
			f, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
			if err != nil {
				n.g.t.Fatalf("node %s: %s: %v", n.name, line, err)
			}
			return f, true
		}
	}
	return 0, false
}

// sumMetric sums a series over nodes; a node without it counts 0.
func (g *group) sumMetric(nodes []*node, name string, labels map[string]string) float64 {
	g.t.Helper()
	var sum float64
	for _, n := range nodes {
		v, _ := n.metric(name, labels)
		sum += v
	}
	return sum
}

// watcher GETs /build.txt from nodes every 20 ms until stopped and keeps
// what each answered, so that a test can say that every node kept serving.
type watcher struct {
	starting bool // the nodes are starting: answers before the first 200 are left out
	stop     chan struct{}
	done     chan struct{}
	answers  map[string][]answer // by node name
}

type answer struct {
	code int
	body string
	err  error
}

func (g *group) watch(nodes ...*node) *watcher {
	w := &watcher{stop: make(chan struct{}), done: make(chan struct{}), answers: map[string][]answer{}}
	go func() {
		defer close(w.done)
		for {
			for _, n := range nodes {
				code, body, err := get(n.url("/build.txt"))
				w.answers[n.name] = append(w.answers[n.name], answer{code, body, err})
			}
			select {
			case <-w.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	g.t.Cleanup(w.end)
	return w
}

// end stops the watcher; its answers can be read after.
func (w *watcher) end() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// requireServed fails t unless every answer of every watched node was 200
// with one of the bodies allowed, and no node went back from a later body
// of allowed to an earlier one.
func (w *watcher) requireServed(t *testing.T, allowed ...string) {
	t.Helper()
	w.end()
	for name, answers := range w.answers {
		if len(answers) < 5 {
			t.Errorf("node %s: only %d requests were made", name, len(answers))
		}
		if w.starting {
			for len(answers) > 0 && answers[0].err != nil {
				answers = answers[1:]
			}
		}
		last := 0
		for i, a := range answers {
			idx := -1
			for j, b := range allowed {
				if a.err == nil && a.code == http.StatusOK && a.body == b {
					idx = j
				}
			}
			if idx < 0 {
				t.Errorf("node %s, request %d of %d: %d %v %q, want 200 with one of %q", name, i+1, len(answers), a.code, a.err, a.body, allowed)
				break
			}
			if idx < last {
				t.Errorf("node %s, request %d of %d: went back from %q to %q", name, i+1, len(answers), allowed[last], a.body)
				break
			}
			last = idx
		}
	}
}

// stop ends the node's Caddy with sig and waits for it.
func (n *node) stop(sig syscall.Signal) {
	n.g.t.Helper()
	n.proc.stop(sig)
}

// first returns the first answer of node name that was not a connection
// error, once the watcher has ended.
func (w *watcher) first(name string) (string, bool) {
	w.end()
	for _, a := range w.answers[name] {
		if a.err == nil {
			return a.body, true
		}
	}
	return "", false
}

// lockFile returns what the group's build lock file (certmagic's
// file_system lock: created and updated times) and its build claim (the
// storage key "building") hold, for messages.
func (g *group) lockFile() string {
	var out []string
	for _, p := range []string{
		filepath.Join(g.storage, "locks", "github_webhookclusters"+groupName+"build.lock"),
		filepath.Join(g.storage, "github_webhook", "clusters", groupName, "building"),
	} {
		b, err := os.ReadFile(p)
		if err != nil {
			out = append(out, err.Error())
		} else {
			out = append(out, filepath.Base(p)+": "+strings.TrimSpace(string(b)))
		}
	}
	return strings.Join(out, "; ")
}

// sameETags checks that nodes answer the same ETag for each of paths, as a
// cache or a browser behind a load balancer needs: file_server's ETag is
// made of the file's modification time and size.
func (g *group) sameETags(nodes []*node, paths ...string) {
	g.t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	for _, p := range paths {
		var first string
		for i, n := range nodes {
			resp, err := client.Head(n.url(p))
			if err != nil {
				g.t.Fatalf("node %s: HEAD %s: %v", n.name, p, err)
			}
			resp.Body.Close()
			etag := resp.Header.Get("ETag")
			if resp.StatusCode != http.StatusOK || etag == "" {
				g.t.Errorf("node %s: HEAD %s: %d, ETag %q", n.name, p, resp.StatusCode, etag)
			}
			if i == 0 {
				first = etag
			} else if etag != first {
				g.t.Errorf("%s: node %s answers ETag %s, node %s %s", p, n.name, etag, nodes[0].name, first)
			}
		}
	}
}
