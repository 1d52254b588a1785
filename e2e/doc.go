// Package e2e holds the end-to-end tests: they build the Caddy binary
// (./cmd/caddy) and the demo (./cmd/demo) from this clone with go build, run
// them as real processes against local bare git repositories, and send them
// signed deliveries made from real GitHub payloads (testdata/github).
//
// The tests run one after another. The Caddy they start listens on the admin
// address 127.0.0.1:2399 and on HTTP ports 9180-9199, apart from the ports
// of the caddytest harness (2999 and 9080) that other packages use at the
// same time. Hugo is needed for the tests that build the Hugo blog; they
// skip, saying so, only when it is not installed.
package e2e
