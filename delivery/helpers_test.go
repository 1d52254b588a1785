package delivery

import (
	"testing"

	"github.com/caddy-webhooks/caddy-github-webhook/internal/testkit"
)

// fixture returns a payload of testdata/github, as GitHub sent it.
func fixture(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := testkit.Fixture(name, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
