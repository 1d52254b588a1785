// Package testkit holds what the tests, the end-to-end tests, the bench and
// the demo of this module share, so that each is written once:
//
//   - Sign and Delivery: a webhook delivery signed as GitHub signs it;
//   - Fixture and PushPayload: GitHub's payloads from testdata/github;
//   - Repo and Remote: a bare git repository with commits, made with real git;
//   - ParseLog: the entries of Caddy's JSON log;
//   - FreePorts: TCP ports on 127.0.0.1 that the kernel picked;
//   - Binary and Build: a binary of this module (Caddy, the demo), built
//     once for given sources;
//   - StartCaddy: a Caddy process on kernel-picked ports, its configuration
//     written, its admin endpoint waited for, its output captured, stopped
//     by its process id (the end-to-end tests, the bench and the demo);
//   - WaitFor: polling for a fact, with a deadline;
//   - GoList: what "go list" says of packages, for boundary tests.
//
// It imports neither the deployer nor the caddywebhook package, so the tests
// of both can import it, and not the testing package either: its test helpers
// take a TB, which *testing.T and *testing.B satisfy, so that the demo and
// the bench can use the rest.
package testkit

// TB is the part of testing.TB that testkit's test helpers use.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	TempDir() string
}
