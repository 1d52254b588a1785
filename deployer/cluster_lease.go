// The group's build lease: one node builds a commit at a time, claimed
// under the storage's lock and renewed while the build runs.

package deployer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"go.uber.org/zap"
)

// leaseClockSkew is how far ahead of this node's clock another node's may
// run and its build lease still hold (see claimBuild). Nodes kept by NTP
// agree within milliseconds; a minute leaves room for a node without it,
// and bounds what a dead node's lease costs the group, whatever its clock
// said, to buildLease plus a minute.
const leaseClockSkew = time.Minute

// buildingRecord is the group's build lease (storage key `building`): the
// node that builds, and until when its claim holds unless renewed.
type buildingRecord struct {
	Node    string    `json:"node"`
	Host    string    `json:"host"`
	Commit  string    `json:"commit"`
	Since   time.Time `json:"since"`
	Expires time.Time `json:"expires"`
}

// claimBuild tries once to claim the group's build for this node. Under the
// storage's lock (`build`), held only for this test-and-set, it reads the
// lease (`building`): when no other node holds one that has not expired, it
// writes its own, renewed every leaseRenew until the returned release is
// called (which deletes it). Otherwise it returns the other node's lease.
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
// and sees so at its next renewal (holdsLease), as a holder that stalled
// past its lease does.
func (d *Deployer) claimBuild(ctx context.Context, cl *Cluster, tip string) (func(), *buildingRecord, error) {
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
	b, err := cl.Storage.Load(lctx, cl.buildingKey())
	var cur buildingRecord
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		err = fmt.Errorf("reading the group's build lease: %w", err)
		d.storageFailed(err)
		return nil, nil, &storageError{err}
	default:
		json.Unmarshal(b, &cur) // unreadable: nobody's
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
	lease := buildingRecord{Node: cl.Node, Host: cl.Host, Commit: tip, Since: now, Expires: now.Add(buildLease)}
	b, _ = json.Marshal(lease)
	if err := cl.Storage.Store(lctx, cl.buildingKey(), b); err != nil {
		err = fmt.Errorf("writing the group's build lease: %w", err)
		d.storageFailed(err)
		return nil, nil, &storageError{err}
	}
	unlock()

	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(leaseRenew)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			sctx, cancel := context.WithTimeout(context.Background(), storageTimeout)
			mine, err := d.holdsLease(sctx, cl, lease)
			if err == nil && !mine {
				// Another node took over a lease this one let
				// expire (a stall, slow storage): never overwrite
				// its lease.
				cancel()
				d.log().Warn("the group's build lease expired and another node took it over")
				return
			}
			lease.Expires = d.now().Add(buildLease)
			b, _ := json.Marshal(lease)
			if err == nil {
				err = cl.Storage.Store(sctx, cl.buildingKey(), b)
			}
			cancel()
			if err != nil {
				d.storageFailed(fmt.Errorf("renewing the group's build lease: %w", err))
			}
		}
	}()
	release := func() {
		close(stop)
		<-done
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storageTimeout)
		defer cancel()
		if mine, err := d.holdsLease(rctx, cl, lease); err != nil || !mine {
			return // another node's lease now, or unreadable: it expires on its own
		}
		if err := cl.Storage.Delete(rctx, cl.buildingKey()); err != nil && !errors.Is(err, fs.ErrNotExist) {
			d.storageFailed(fmt.Errorf("ending the group's build lease: %w", err))
			d.log().Warn("ending the group's build lease; it expires on its own", zap.Error(err))
		}
	}
	return release, nil, nil
}

// holdsLease reports whether the group's build lease in storage is still
// lease, the one this node took (same node, same start). Storage has no
// compare-and-set, so a takeover between this read and the caller's write
// remains possible, in a window of one storage call instead of a whole
// renewal period.
func (d *Deployer) holdsLease(ctx context.Context, cl *Cluster, lease buildingRecord) (bool, error) {
	b, err := cl.Storage.Load(ctx, cl.buildingKey())
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var cur buildingRecord
	if json.Unmarshal(b, &cur) != nil {
		return false, nil
	}
	return cur.Node == lease.Node && cur.Since.Equal(lease.Since), nil
}
