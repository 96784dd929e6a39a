// Package testwait is the one way the project's tests wait: poll a
// condition with a deadline, never sleep a fixed time.
package testwait

import (
	"testing"
	"time"
)

// Interval is how often For polls.
const Interval = 10 * time.Millisecond

// For polls cond every Interval until it holds, failing the test when
// timeout passes first; what says what was awaited.
func For(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	Every(t, timeout, Interval, what, cond)
}

// Every is For with its own polling interval, for conditions that are
// costly to check (a process to run, a request to send).
func Every(t testing.TB, timeout, interval time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		<-tick.C
	}
}
