package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// withPreviews rewrites the nodes' Caddyfiles with `previews
// pr-{number}.preview.test` and a second site block that serves each
// preview from its folder by host, as DESIGN's example does.
func (g *group) withPreviews() {
	g.t.Helper()
	for _, n := range g.nodes {
		cf := n.caddyfile()
		poll := "cluster_poll " + groupPoll + "\n"
		if !strings.Contains(cf, poll) {
			g.t.Fatalf("no %q in the group's Caddyfile", poll)
		}
		cf = strings.Replace(cf, poll, poll+"\t\tpreviews pr-{number}.preview.test\n", 1)
		cf += fmt.Sprintf("\nhttp://*.preview.test:%d {\n\troot * %s/previews/{host}/current\n\tfile_server\n}\n", n.port, n.path)
		if err := os.WriteFile(n.config, []byte(cf), 0o644); err != nil {
			g.t.Fatal(err)
		}
	}
}

// preview returns what the node serves at path of host.
func (n *node) preview(host, path string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, n.url(path), nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), err
}

// deliverPR sends the node a signed pull_request delivery and requires 202.
func (n *node) deliverPR(id, action string, number int, head string) {
	n.g.t.Helper()
	body, err := testkit.PullRequestPayload(testkit.PullRequestEvent{Repo: "octocat/site", Base: "main", Number: number, Action: action, Head: head})
	if err != nil {
		n.g.t.Fatal(err)
	}
	if code, ans := deliver(n.g.t, n.hook(), secret, "pull_request", id, body); code != http.StatusAccepted {
		n.g.t.Fatalf("node %s: pull_request %s: %d %s, want 202", n.name, action, code, ans)
	}
}

// waitPreview waits until every node serves head's build at host, and
// returns the build.txt they serve, the same bytes.
func (g *group) waitPreview(host, head string, nodes ...*node) string {
	g.t.Helper()
	served := ""
	for _, n := range nodes {
		waitUntil(g.t, time.Minute, "node "+n.name+" to serve "+host+" at "+head[:12], func() error {
			code, b, err := n.preview(host, "/build.txt")
			if err != nil {
				return err
			}
			if code != http.StatusOK || !strings.HasPrefix(b, head+" ") {
				return fmt.Errorf("%d %q", code, b)
			}
			if served == "" {
				served = b
			} else if b != served {
				g.t.Errorf("node %s serves %s's build.txt %q, another node %q: not the bytes of one build", n.name, host, b, served)
			}
			return nil
		})
	}
	return served
}

// TestClusterPreviews: three Caddy nodes with `previews` and one storage
// folder. A pull request delivered to a is built once and every node
// serves the same bytes at the preview's host; a push delivered to c is
// built once and replaces it everywhere; b, stopped and started again,
// serves the preview at once; closing it on b removes it from every node.
func TestClusterPreviews(t *testing.T) {
	g := newGroup(t, 3)
	g.withPreviews()
	a, b, c := g.nodes[0], g.nodes[1], g.nodes[2]
	first := g.remote.Git("rev-parse", "HEAD")
	g.startAll()
	g.waitServing(first, a, b, c)
	const host = "pr-7.preview.test"

	head := g.remote.PullRequest(7, "pr", map[string]string{"index.html": "pull request 7\n"})
	a.deliverPR("pr-1", "opened", 7, head)
	built1 := g.waitPreview(host, head, a, b, c)
	g.requireOneBuild(head)
	if _, body, err := c.preview(host, "/index.html"); err != nil || body != "pull request 7\n" {
		t.Errorf("c's preview index.html: %q %v", body, err)
	}
	g.sameBytes(a, b, c) // the site is untouched

	head2 := g.remote.PullRequest(7, "pr again", map[string]string{"index.html": "pull request 7, again\n"})
	c.deliverPR("pr-2", "synchronize", 7, head2)
	built2 := g.waitPreview(host, head2, a, b, c)
	g.requireOneBuild(head2)
	if built2 == built1 {
		t.Error("the push serves the first build")
	}

	b.stop(syscall.SIGTERM)
	b.start()
	if code, body, err := b.preview(host, "/build.txt"); err != nil || code != http.StatusOK || body != built2 {
		t.Errorf("b after its restart serves %s: %d %q %v, want %q at once", host, code, body, err, built2)
	}

	b.deliverPR("pr-3", "closed", 7, head2)
	for _, n := range []*node{a, b, c} {
		waitUntil(t, time.Minute, "node "+n.name+" to stop serving "+host, func() error {
			code, body, err := n.preview(host, "/build.txt")
			if err != nil {
				return err
			}
			if code != http.StatusNotFound {
				return fmt.Errorf("%d %q", code, body)
			}
			return nil
		})
	}
	if _, err := os.Stat(g.storage + "/github_webhook/clusters/" + groupName + "/previews/7/archives"); err == nil {
		entries, _ := os.ReadDir(g.storage + "/github_webhook/clusters/" + groupName + "/previews/7/archives")
		if len(entries) != 0 {
			t.Errorf("the closed preview's archives are in storage: %v", entries)
		}
	}
}
