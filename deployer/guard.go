package deployer

import (
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"go.uber.org/zap"
)

// guard runs fn, one turn of the worker's work (a deploy, a look at the
// group, housekeeping), and recovers from a panic in it, as Caddy's own
// long-running goroutines do: a bug in one site's deployer must not end
// the process, and with it every site Caddy serves. The panic is logged
// with its stack; when reason is set (fn was a deploy, or followed the
// group), the target is marked failed with the panic's message in
// Status.Last and Status.Checked, and EventFailed is emitted. The worker
// goes on: the next wake deploys again.
func (d *Deployer) guard(work string, reason Reason, fn func()) {
	defer func() {
		if v := recover(); v != nil {
			d.recovered(work, reason, v, debug.Stack())
		}
	}()
	fn()
}

// recovered handles what guard recovered: v, panicked with stack.
func (d *Deployer) recovered(work string, reason Reason, v any, stack []byte) {
	msg := fmt.Sprintf("%s panicked: %v", work, v)
	d.log().Error("panicked", zap.String("work", work), zap.String("reason", string(reason)),
		zap.Any("panic", v), zap.String("stack", string(stack)))
	// What the turn held is in an unknown state: the cat-file process may
	// be half-way through an answer, a release half-built.
	d.made = nil
	d.closeCatFile()
	d.mu.Lock()
	var running Running
	if d.running != nil {
		running = *d.running
	}
	d.running = nil
	d.mu.Unlock()
	// As after a crash: the build's process group ended, a half-built
	// release and git's lock files removed, the state as last saved.
	func() {
		defer func() {
			if v := recover(); v != nil {
				d.log().Error("panicked", zap.String("work", "recovering the folder after a panic"),
					zap.Any("panic", v), zap.String("stack", string(debug.Stack())))
			}
		}()
		d.recoverFolder(false)
	}()
	if reason == "" {
		return
	}
	now := d.now()
	d.diskMu.Lock()
	d.mu.Lock()
	save := false
	if reason == ReasonGroup {
		// Following the group's release panicked: it is not followed
		// again until the group's live record changes, as for an
		// archive refused.
		if gl := d.group.live; gl != nil && (running.Commit == "" || gl.Commit == running.Commit) {
			d.group.refused, d.group.refusedErr = gl.Digest, msg
		}
	} else if running.Commit != "" {
		// As for a build that failed: start-up and poll leave the tip
		// alone; a delivery, a manual deploy or a new commit deploys.
		d.st.FailedCommit = running.Commit
		save = true
	}
	res := &Result{Result: "error", Error: msg, Reason: reason, Commit: running.Commit, Release: running.Release, At: now}
	if !running.Since.IsZero() {
		res.Duration = Seconds(now.Sub(running.Since))
	}
	d.last = res
	d.checks++
	d.checked = &Checked{Count: d.checks, Reason: reason, Commit: running.Commit, Outcome: OutcomeFailed, Detail: msg, At: now}
	st := d.st
	d.mu.Unlock()
	if save {
		if err := st.save(d.path); err != nil {
			d.log().Error("saving state", zap.Error(err))
		}
	}
	d.diskMu.Unlock()
	d.record(res)
	func() {
		// Notify is the caller's code: its own panic is logged too.
		defer func() {
			if v := recover(); v != nil {
				d.log().Error("panicked", zap.String("work", "notifying a failed deploy"),
					zap.Any("panic", v), zap.String("stack", string(debug.Stack())))
			}
		}()
		d.notify(Event{Kind: EventFailed, Commit: running.Commit, Release: running.Release, Reason: reason,
			Duration: time.Duration(res.Duration), Err: errors.New(msg), At: now})
	}()
}
