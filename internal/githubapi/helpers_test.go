package githubapi

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/githubtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	shaA  = "1111111111111111111111111111111111111111"
	shaB  = "2222222222222222222222222222222222222222"
	shaC  = "3333333333333333333333333333333333333333"
	token = "github_pat_11AAAAAAA0SECRETSECRETSECRET"
)

// counts records OnRequest calls as "path result" -> n.
type counts struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *counts) add(path, result string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[path+" "+result]++
}

func (c *counts) get(path, result string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[path+" "+result]
}

// total is the number of calls with result, whatever the path.
func (c *counts) total(result string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for k, v := range c.m {
		if strings.HasSuffix(k, " "+result) {
			n += v
		}
	}
	return n
}

func (c *counts) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var keys []string
	for k, v := range c.m {
		keys = append(keys, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}

type env struct {
	srv    *githubtest.Server
	client *Client
	counts *counts
	logs   *observer.ObservedLogs
}

// setup starts a githubtest server with opts and a Client for it, with the
// server's token unless clientToken overrides it ("-" for none).
func setup(t *testing.T, opts githubtest.Options, clientToken string) *env {
	t.Helper()
	srv := githubtest.Start(t, opts)
	core, logs := observer.New(zapcore.DebugLevel)
	e := &env{srv: srv, counts: &counts{m: map[string]int{}}, logs: logs}
	tok := opts.Token
	switch clientToken {
	case "":
	case "-":
		tok = ""
	default:
		tok = clientToken
	}
	c, err := New(Config{
		APIURL: srv.URL(), Token: tok, Owner: srv.Owner(), Repo: srv.Repo(),
		Logger: zap.New(core), OnRequest: e.counts.add,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	e.client = c
	return e
}

// fakeClock is the reporter's clock in tests: sleeping records the wait
// and moves the clock on at once.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	waits []time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_800_000_000, 0)} }

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	f.mu.Lock()
	f.waits = append(f.waits, d)
	f.now = f.now.Add(d)
	f.mu.Unlock()
	return ctx.Err()
}

func (f *fakeClock) Waits() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.waits...)
}

// reporter returns a Reporter on e's client with a fake clock, not started.
func (e *env) reporter(t *testing.T, cfg ReporterConfig) (*Reporter, *fakeClock) {
	t.Helper()
	if cfg.Environment == "" {
		cfg.Environment = "production"
	}
	r, err := e.client.NewReporter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	r.now, r.sleep = clock.Now, clock.Sleep
	r.base, r.maxBackoff = time.Second, 8*time.Second
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = r.Close(ctx)
	})
	return r, clock
}

// flush closes r, which sends every queued report first.
func flush(t *testing.T, r *Reporter) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// logText is every log line with its fields, for searching.
func logText(logs *observer.ObservedLogs) string {
	var b strings.Builder
	for _, e := range logs.All() {
		fmt.Fprintf(&b, "%s %s %v\n", e.Level, e.Message, e.ContextMap())
	}
	return b.String()
}
