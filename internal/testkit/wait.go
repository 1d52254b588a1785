package testkit

import "time"

// WaitFor calls fact every 20ms until it returns nil, and fails tb, with
// what and fact's last error, if that takes longer than timeout. Use it to
// wait for something that can be observed (a status, a served page, a file),
// never as a pause before asserting that something did not happen.
func WaitFor(tb TB, timeout time.Duration, what string, fact func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := fact()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("waited %s for %s: %v", timeout, what, err)
			return
		}
		<-tick.C
	}
}
