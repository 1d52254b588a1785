// The group's build lease: one node builds a commit at a time, claimed
// under the storage's lock and renewed while the build runs.

package deployer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"runtime/debug"
	"time"

	"go.uber.org/zap"
)

// leaseClockSkew is how far ahead of this node's clock another node's may
// run and its build lease still hold (see claimBuild). Nodes kept by NTP
// agree within milliseconds; a minute leaves room for a node without it,
// and bounds what a dead node's lease costs the group, whatever its clock
// said, to buildLease plus a minute.
const leaseClockSkew = time.Minute

// buildingRecord is the group's build lease as stored (key `building`):
// the node that builds, and until when its claim holds unless renewed.
// Version is recordVersion (see decodeRecord).
type buildingRecord struct {
	Version int       `json:"version"`
	Node    string    `json:"node"`
	Host    string    `json:"host"`
	Commit  string    `json:"commit"`
	Since   time.Time `json:"since"`
	Expires time.Time `json:"expires"`
	// Ended, when set, says the lease ended then: its holder released it
	// (Expires is zero), or live moved while nobody held it (see
	// markLiveMoved). Watches read live when the record changes.
	Ended time.Time `json:"ended,omitzero"`
}

// lease is the group's build lease that this node holds: claimed by
// claimLease, renewed by its own goroutine until release ends it.
type lease struct {
	d    *Deployer
	cl   *Cluster
	rec  buildingRecord // as this node last wrote it; the renewer's alone
	stop chan struct{}
	done chan struct{}
}

// claimBuild claims the group's build for this node (see claimLease): it
// returns the lease's release, or the other node's lease that holds.
func (d *Deployer) claimBuild(ctx context.Context, cl *Cluster, tip string) (func(), *buildingRecord, error) {
	l, holder, err := d.claimLease(ctx, cl, tip)
	if l == nil {
		return nil, holder, err
	}
	return func() { l.release(ctx) }, nil, nil
}

// claimLease tries once to claim the group's build for this node. Under the
// storage's lock (`build`), held only for this test-and-set, it reads the
// lease (`building`): when no other node holds one that has not expired, it
// writes its own, renewed every leaseRenew until release. Otherwise it
// returns the other node's lease.
//
// The storage's lock is not held for the whole build because its expiry is
// the storage module's own business: certmagic's file_system renews a lock
// from a goroutine that outlives the Unlock by up to 5 s and renews
// whatever lock file has that name meanwhile, so a builder killed with a
// lock taken just after another node released it would leave a lock that
// never goes stale. A lease that only its holder renews expires buildLease
// after its holder died, whatever the storage.
//
// Expiries are compared across nodes' clocks. A lease that expires further
// ahead than buildLease plus leaseClockSkew was written by a clock that
// runs ahead (or by hand): it is stale, or a node that died with its clock
// a day ahead would stop the group's builds for a day. A live holder whose
// clock runs that far ahead loses its lease at each claim of another node,
// and sees so at its next renewal (held), as a holder that stalled past
// its lease does.
func (d *Deployer) claimLease(ctx context.Context, cl *Cluster, tip string) (*lease, *buildingRecord, error) {
	lctx, cancel := context.WithTimeout(ctx, storageTimeout)
	defer cancel()
	if err := cl.Storage.Lock(lctx, cl.lockName()); err != nil {
		err = fmt.Errorf("taking the group's build lock: %w", err)
		if d.ctx.Err() == nil {
			d.storageFailed(err)
		}
		return nil, nil, &storageError{err}
	}
	unlocked := false
	unlock := func() {
		if unlocked {
			return
		}
		unlocked = true
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storageTimeout)
		defer cancel()
		if err := cl.Storage.Unlock(uctx, cl.lockName()); err != nil {
			d.storageFailed(fmt.Errorf("releasing the group's build lock: %w", err))
			d.log().Warn("releasing the group's build lock; it expires on its own", zap.Error(err))
		}
	}
	defer unlock()
	cur, err := readLeaseRecord(lctx, cl)
	if err != nil {
		err = fmt.Errorf("reading the group's build lease: %w", err)
		d.storageFailed(err)
		return nil, nil, &storageError{err}
	}
	now := d.now()
	held := cur.Node != "" && cur.Node != cl.Node && now.Before(cur.Expires)
	if held && cur.Expires.After(now.Add(buildLease+leaseClockSkew)) {
		// No holder writes an expiry this far ahead unless its clock runs
		// ahead: were it dead, the group would build nothing until then.
		held = false
		d.log().Warn("the group's build lease expires further ahead than a lease can; its holder's clock runs ahead: taking it over",
			zap.String("node", cur.Node), zap.String("host", cur.Host), zap.Time("lease_expires", cur.Expires))
	}
	if held {
		return nil, &cur, nil
	}
	l := &lease{d: d, cl: cl, stop: make(chan struct{}), done: make(chan struct{}),
		rec: buildingRecord{Version: recordVersion, Node: cl.Node, Host: cl.Host, Commit: tip, Since: now, Expires: now.Add(buildLease)}}
	b, _ := json.Marshal(l.rec)
	if err := cl.Storage.Store(lctx, cl.buildingKey(), b); err != nil {
		err = fmt.Errorf("writing the group's build lease: %w", err)
		d.storageFailed(err)
		return nil, nil, &storageError{err}
	}
	unlock()
	go l.renew(d.opts.leaseRenew)
	return l, nil, nil
}

// readLeaseRecord reads the group's build lease: the zero record when
// there is none, or it cannot be read (nobody's), an error when storage
// fails or the record is of a version this node does not know.
func readLeaseRecord(ctx context.Context, cl *Cluster) (buildingRecord, error) {
	var cur buildingRecord
	b, err := cl.Storage.Load(ctx, cl.buildingKey())
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return cur, nil
	case err != nil:
		return cur, err
	}
	if err := decodeRecord(b, &cur, &cur.Version); err != nil {
		var ve *versionError
		if errors.As(err, &ve) {
			return buildingRecord{}, err
		}
		return buildingRecord{}, nil // unreadable: nobody's
	}
	return cur, nil
}

// renew renews the lease every interval until release: the lease's
// goroutine. A panic in one renewal is logged and counted as a failed
// renewal; the next renews again.
func (l *lease) renew(every time.Duration) {
	defer close(l.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		if !l.renewOnce() {
			return
		}
	}
}

// renewOnce renews the lease in storage, unless another node took it over:
// then it reports false, and the lease is never written again.
func (l *lease) renewOnce() (goOn bool) {
	d, cl := l.d, l.cl
	defer func() {
		if v := recover(); v != nil {
			d.log().Error("panicked", zap.String("work", "renewing the group's build lease"),
				zap.Any("panic", v), zap.String("stack", string(debug.Stack())))
			d.storageFailed(fmt.Errorf("renewing the group's build lease: panicked: %v", v))
			goOn = true
		}
	}()
	d.fault(FaultRenew, l.rec.Commit)
	sctx, cancel := context.WithTimeout(context.Background(), storageTimeout)
	defer cancel()
	mine, err := l.held(sctx)
	if err == nil && !mine {
		// Another node took over a lease this one let expire (a
		// stall, slow storage): never overwrite its lease.
		d.log().Warn("the group's build lease expired and another node took it over")
		return false
	}
	if err == nil {
		rec := l.rec
		rec.Expires = d.now().Add(buildLease)
		b, _ := json.Marshal(rec)
		if err = cl.Storage.Store(sctx, cl.buildingKey(), b); err == nil {
			l.rec = rec
		}
	}
	if err != nil {
		d.storageFailed(fmt.Errorf("renewing the group's build lease: %w", err))
	}
	return true
}

// held reports whether the group's build lease in storage is still this
// one (same node, same start). Storage has no compare-and-set, so a
// takeover between this read and the caller's write remains possible, in
// a window of one storage call instead of a whole renewal period.
func (l *lease) held(ctx context.Context) (bool, error) {
	cur, err := readLeaseRecord(ctx, l.cl)
	if err != nil {
		return false, err
	}
	return cur.Node == l.rec.Node && cur.Since.Equal(l.rec.Since), nil
}

// release stops the renewals and ends the lease in storage, unless another
// node took it over meanwhile: it writes the lease ended (Ended set,
// Expires zero, so that no node, of any version, takes it for held)
// rather than deleting it, so that every watch sees a new record and
// reads live, however short the lease was (see watchTick). Storage that
// fails leaves it to expire.
func (l *lease) release(ctx context.Context) {
	close(l.stop)
	<-l.done
	d, cl := l.d, l.cl
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storageTimeout)
	defer cancel()
	if mine, err := l.held(rctx); err != nil || !mine {
		return // another node's lease now, or unreadable: it expires on its own
	}
	ended := l.rec
	ended.Expires, ended.Ended = time.Time{}, d.now()
	b, _ := json.Marshal(ended)
	if err := cl.Storage.Store(rctx, cl.buildingKey(), b); err != nil {
		d.storageFailed(fmt.Errorf("ending the group's build lease: %w", err))
		d.log().Warn("ending the group's build lease; it expires on its own", zap.Error(err))
	}
}
