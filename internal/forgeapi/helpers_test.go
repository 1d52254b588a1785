package forgeapi

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/forgetest"
)

const (
	token   = "tok-3e1f0c9a7b5d"
	sha1    = "1111111111111111111111111111111111111111"
	sha2    = "2222222222222222222222222222222222222222"
	sha3    = "3333333333333333333333333333333333333333"
	siteURL = "https://blog.example.com"
)

// kinds are the forges, and the states of each for a status that waits,
// passes and fails.
var kinds = []struct {
	kind                    Kind
	pending, passed, failed string
}{
	{Gitea, "pending", "success", "failure"},
	{Forgejo, "pending", "success", "failure"},
	{GitLab, "running", "success", "failed"},
	{Bitbucket, "INPROGRESS", "SUCCESSFUL", "FAILED"},
}

// counter records OnRequest's calls.
type counter struct {
	mu    sync.Mutex
	calls map[string]int
}

func (c *counter) note(path, result string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.calls == nil {
		c.calls = map[string]int{}
	}
	c.calls[path+" "+result]++
}

func (c *counter) get(path, result string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[path+" "+result]
}

// newClient starts a stand-in of kind and a client of it, in the
// environment "production".
func newClient(t *testing.T, kind Kind, repo string) (*Client, *forgetest.Server, *counter) {
	t.Helper()
	srv := forgetest.Start(t, forgetest.Options{Kind: string(kind), Token: token, Repo: repo})
	cnt := &counter{}
	c, err := New(Config{Kind: kind, APIURL: srv.URL(), Token: token, Repo: srv.Repo(), Environment: "production", OnRequest: cnt.note})
	if err != nil {
		t.Fatal(err)
	}
	c.perPage = 10 // several pages with few statuses
	t.Cleanup(c.CloseIdleConnections)
	return c, srv, cnt
}

// fastReporter is a reporter whose backoff is a millisecond.
func fastReporter(t *testing.T, c *Client) *Reporter {
	t.Helper()
	r, err := c.NewReporter(ReporterConfig{}, WithBackoff(time.Millisecond, 4*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	r.Start()
	t.Cleanup(func() { _ = r.Close(context.Background()) })
	return r
}

// flush closes r once what it queued was sent.
func flush(t *testing.T, r *Reporter) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
}
