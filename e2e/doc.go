// Package e2e holds the end-to-end tests: they build the Caddy binary
// (./cmd/caddy) and the demo (./cmd/demo) from this clone with go build
// (once for given sources: internal/testkit keeps the binaries), run them as
// real processes against local bare git repositories, and send them signed
// deliveries made from real GitHub payloads (testdata/github).
//
// Every Caddy they start listens on ports the kernel picked (its admin
// endpoint and its site), so that two runs on one machine, or other
// packages' tests, do not meet. They wait for facts (the admin API's deploy
// status, the served bytes, files a build writes), never for a log message
// or a fixed time. The cluster tests (DESIGN.md, "Several nodes") run three
// such Caddy processes, each with its own HOME and XDG folders (so its own
// instance id) and deploy folder, sharing one `storage file_system` folder
// and one `cluster` group. Hugo is needed for the tests that build the
// Hugo blog; they skip, saying so, only when it is not installed.
package e2e
