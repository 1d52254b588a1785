// How often a node of a group reads the group's storage: slowly while
// nobody builds, fast while another node holds the build lease, so that
// followers serve a new release a fraction of a second after the builder
// stores it, with no more reads at idle than one per Cluster.Poll.

package deployer

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// DefaultFastWatch is how often a node reads its group's live record while
// another node holds the group's build lease; every fastLeaseEvery such
// reads it also reads the lease, to see it end.
const (
	DefaultFastWatch = 150 * time.Millisecond
	fastLeaseEvery   = 5
)

// watchTick is one tick of the watch of the group's storage; it returns
// the wait before the next one.
//
// While nobody builds, a tick reads one record: the build lease
// (`building`), not live. Every write of live is made while its writer
// holds the lease, which it then ends by writing an ended lease (a build),
// or is followed by such a record when nobody holds the lease (a rollback,
// see markLiveMoved): so a lease record that is the one last read says
// that live has not moved since it was last read, and one that differs,
// that it may have. A lease that another node holds makes the watch fast:
// live is read every DefaultFastWatch (and the lease every fastLeaseEvery
// ticks) until the lease ends. A node of an older version ends its lease
// by deleting the record and rolls back without one: its node record,
// read every nodesEveryTicks, still tells this node to read live again
// (lookAgain).
func (d *Deployer) watchTick() time.Duration {
	cfg := d.config()
	cl := cfg.Cluster
	if cl == nil {
		return 0
	}
	slow := cl.poll()
	fast := min(d.opts.fastWatch, slow)
	d.mu.Lock()
	g := &d.group
	known := g.name == cl.Name && !g.liveReadAt.IsZero()
	lookAgain := g.lookAgain
	g.lookAgain = false
	inFast := known && g.fast
	leaseDue := true
	if inFast {
		g.fastTicks++
		leaseDue = g.fastTicks%fastLeaseEvery == 0
	}
	d.mu.Unlock()
	if !known || lookAgain {
		d.watchGroup()
		return slow
	}
	d.fault(FaultWatch, "")
	if !leaseDue {
		// Fast, between two reads of the lease: live alone.
		if gl, err := d.readLive(d.ctx, cl); err == nil && d.followGroup(cfg, gl) {
			d.syncNodes(cl, gl)
		}
		return fast
	}
	ctx, cancel := context.WithTimeout(d.ctx, storageTimeout)
	rec, err := readLeaseRecord(ctx, cl)
	cancel()
	if err != nil {
		if d.ctx.Err() == nil {
			d.storageFailed(err)
			d.log().Debug("reading the group's build lease", zap.Error(err))
		}
		if inFast {
			return fast
		}
		return slow
	}
	held := rec.Node != "" && rec.Node != cl.Node && d.now().Before(rec.Expires)
	var changed bool
	d.groupAnswered(cl, func(g *groupState) {
		changed = !g.leaseRead || !rec.same(g.lease)
		g.lease, g.leaseRead = rec, true
		g.fast = held
		if !held {
			g.fastTicks = 0
		}
	})
	gl := d.groupLive()
	followed := false
	if held || changed {
		var err error
		if gl, err = d.readLive(d.ctx, cl); err != nil {
			if d.ctx.Err() == nil {
				d.log().Debug("reading the group's live record", zap.Error(err))
			}
			if held {
				return fast
			}
			// Read live again at the next tick: it may have moved.
			d.mu.Lock()
			d.group.leaseRead = false
			d.mu.Unlock()
			return slow
		}
		followed = d.followGroup(cfg, gl)
	}
	if held {
		if followed {
			d.syncNodes(cl, gl)
		}
		return fast
	}
	d.syncNodes(cl, gl)
	return slow
}

// groupLive is the group's live record as last read.
func (d *Deployer) groupLive() *liveRecord {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.group.live
}

// same reports whether r and o are the same record of the lease.
func (r buildingRecord) same(o buildingRecord) bool {
	return r.Version == o.Version && r.Node == o.Node && r.Host == o.Host && r.Commit == o.Commit &&
		r.Since.Equal(o.Since) && r.Expires.Equal(o.Expires) && r.Ended.Equal(o.Ended)
}

// markLiveMoved tells the group's watches that live moved without a build
// lease (a rollback): under the storage's lock, when no node holds the
// lease (a holder's lease makes every watch read live anyway, and its end
// is a new record), it writes an ended lease of this node's. A failure
// is logged: the other nodes then see the move at their next read of the
// nodes' records.
func (d *Deployer) markLiveMoved(ctx context.Context, cl *Cluster) {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storageTimeout)
	defer cancel()
	if err := cl.Storage.Lock(lctx, cl.lockName()); err != nil {
		d.storageFailed(fmt.Errorf("taking the group's build lock: %w", err))
		d.log().Warn("telling the group that live moved", zap.Error(err))
		return
	}
	defer func() {
		if err := cl.Storage.Unlock(lctx, cl.lockName()); err != nil {
			d.storageFailed(fmt.Errorf("releasing the group's build lock: %w", err))
		}
	}()
	cur, err := readLeaseRecord(lctx, cl)
	now := d.now()
	if err == nil && cur.Node != "" && now.Before(cur.Expires) {
		return // held: every watch reads live until it ends
	}
	if err == nil {
		b, _ := json.Marshal(buildingRecord{Version: recordVersion, Node: cl.Node, Host: cl.Host, Since: now, Ended: now})
		err = cl.Storage.Store(lctx, cl.buildingKey(), b)
	}
	if err != nil {
		d.storageFailed(fmt.Errorf("telling the group that live moved: %w", err))
		d.log().Warn("telling the group that live moved; the other nodes see it at their next read of the nodes' records", zap.Error(err))
	}
}
