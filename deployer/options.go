package deployer

import "time"

// Option changes how New makes a Deployer. A caller that deploys passes
// none: options are how tests reach inside (a fault to inject, shorter
// intervals), never a setting of the target, which is Config's.
type Option func(*options)

// options are what New's Options set; fixed once New returns.
type options struct {
	idleAfter time.Duration // see idle.go
	retryBase time.Duration // first backoff of a failed fetch or storage call
	gateBase  time.Duration // see gate.go
	gateMax   time.Duration
	gateFor   time.Duration
	partSize  int // most bytes of a group's archive stored under one key
	// leaseRenew is how often the group's build lease is renewed.
	leaseRenew time.Duration
	// fastWatch is how often the group's live record is read while
	// another node holds the build lease (see watchTick).
	fastWatch time.Duration
	// fault is called at the steps WithFault lists; nil: never.
	fault func(step, detail string)
}

func defaultOptions() options {
	return options{
		idleAfter:  idleAfter,
		retryBase:  retryBase,
		gateBase:   gateBase,
		gateMax:    gateMax,
		gateFor:    gateFor,
		partSize:   archivePartSize,
		leaseRenew: leaseRenew,
		fastWatch:  DefaultFastWatch,
	}
}

// Steps of the worker's work at which WithFault's function is called,
// with what detail.
const (
	// FaultDeploy: a wake's deploy begins, before the fetch; detail is
	// the wake's reason.
	FaultDeploy = "deploy"
	// FaultSync: a release is complete (built, checked) and its files
	// are about to be synced to disk, before current switches to it;
	// detail is the release's folder.
	FaultSync = "sync"
	// FaultReuse: reusing the spare changed a path of the new release;
	// detail is the path, relative to the release.
	FaultReuse = "reuse"
	// FaultWatch: the worker is about to read its group's storage on a
	// tick of its watch, or its live record after a deploy.
	FaultWatch = "watch"
	// FaultStored: the group's live record names a release just built,
	// and its builder still holds the build lease; detail is the commit.
	FaultStored = "stored"
	// FaultRenew: the group's build lease is about to be renewed, on the
	// renewer's goroutine; detail is the commit being built.
	FaultRenew = "renew"
)

// WithFault calls fault at each step named by the Fault constants, on the
// goroutine doing the work, so that a test can make a bug or a crash
// strike there: fault may panic, block or record what it sees.
func WithFault(fault func(step, detail string)) Option {
	return func(o *options) { o.fault = fault }
}

// withIdleAfter sets how long the worker waits, with no wake, before its
// housekeeping.
func withIdleAfter(d time.Duration) Option {
	return func(o *options) { o.idleAfter = d }
}

// withRetryBase sets the first backoff of a failed fetch, which doubles up
// to retryMax.
func withRetryBase(d time.Duration) Option {
	return func(o *options) { o.retryBase = d }
}

// withGateBackoff sets how the worker looks again at a tip the gate holds
// back: after base, doubling up to maxWait, for at most limit.
func withGateBackoff(base, maxWait, limit time.Duration) Option {
	return func(o *options) { o.gateBase, o.gateMax, o.gateFor = base, maxWait, limit }
}

// withPartSize sets the most bytes of a group's archive stored under one
// key, so that small sites are cut into several parts.
func withPartSize(n int) Option {
	return func(o *options) { o.partSize = n }
}

// withLeaseRenew sets how often the group's build lease is renewed.
func withLeaseRenew(d time.Duration) Option {
	return func(o *options) { o.leaseRenew = d }
}

// withFastWatch sets how often the group's live record is read while
// another node holds the build lease.
func withFastWatch(d time.Duration) Option {
	return func(o *options) { o.fastWatch = d }
}

// fault calls the fault injected with WithFault, if any.
func (d *Deployer) fault(step, detail string) {
	if d.opts.fault != nil {
		d.opts.fault(step, detail)
	}
}

// reuseStep is called after each path that updateRelease changes.
func (d *Deployer) reuseStep(rel string) { d.fault(FaultReuse, rel) }

// syncRelease puts a release's files on disk: see syncReleaseFiles.
func (d *Deployer) syncRelease(dir string, made *madeRelease) error {
	d.fault(FaultSync, dir)
	return syncReleaseFiles(dir, made)
}
