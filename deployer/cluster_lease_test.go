package deployer

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// A lease of another node that has not expired keeps this node from
// building, also when that node's clock runs ahead by less than
// leaseClockSkew; an expired one, one from a clock further ahead (on main
// it held until its expiry, an hour on), or this node's own, does not; the
// claim's release ends the lease.
func TestClusterClaimBuild(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name   string
		lease  *buildingRecord
		claims bool
	}{
		{"no lease", nil, true},
		{"another node's, held", &buildingRecord{Node: "b", Expires: now.Add(buildLease)}, false},
		{"another node's, its clock ahead within the allowance", &buildingRecord{Node: "b", Expires: now.Add(buildLease + leaseClockSkew - 10*time.Second)}, false},
		{"another node's, expired", &buildingRecord{Node: "b", Expires: now.Add(-time.Second)}, true},
		{"another node's, its clock an hour ahead", &buildingRecord{Node: "b", Expires: now.Add(time.Hour)}, true},
		{"this node's own, left by its last process", &buildingRecord{Node: "a", Expires: now.Add(time.Hour)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGroup(t)
			d, cfg := g.unstarted("a")
			ctx := context.Background()
			key := "github_webhook/clusters/blog/building"
			if tc.lease != nil {
				b, _ := json.Marshal(tc.lease)
				if err := g.storage.Store(ctx, key, b); err != nil {
					t.Fatal(err)
				}
			}
			release, holder, err := d.claimBuild(ctx, cfg.Cluster, "c0ffee")
			if err != nil {
				t.Fatal(err)
			}
			if claimed := release != nil; claimed != tc.claims {
				t.Fatalf("claimed %v, want %v (holder %+v)", claimed, tc.claims, holder)
			}
			if !tc.claims {
				if holder == nil || holder.Node != "b" {
					t.Errorf("holder %+v, want b", holder)
				}
				return
			}
			var got buildingRecord
			b, err := g.storage.Load(ctx, key)
			if err == nil {
				err = json.Unmarshal(b, &got)
			}
			if err != nil || got.Node != "a" || got.Commit != "c0ffee" || !got.Expires.After(time.Now()) {
				t.Errorf("lease in storage %+v (%v), want a's", got, err)
			}
			release()
			if rec := g.leaseRecord(); rec.Ended.IsZero() || !rec.Expires.IsZero() || rec.Node != "a" {
				t.Errorf("the lease after its release: %+v, want it ended (Ended set, no expiry)", rec)
			}
		})
	}
}

// A builder that stalled past its lease, which another node then took
// over, neither deletes nor overwrites the other node's lease when it ends.
func TestClusterReleaseKeepsATakenOverLease(t *testing.T) {
	g := newGroup(t)
	d, cfg := g.unstarted("a")
	ctx := context.Background()
	key := "github_webhook/clusters/blog/building"
	release, _, err := d.claimBuild(ctx, cfg.Cluster, "c0ffee")
	if err != nil || release == nil {
		t.Fatalf("claim: %v, %v", release != nil, err)
	}
	other := buildingRecord{Node: "b", Commit: "beef", Since: time.Now(), Expires: time.Now().Add(time.Hour)}
	b, _ := json.Marshal(other)
	if err := g.storage.Store(ctx, key, b); err != nil {
		t.Fatal(err)
	}
	release()
	var got buildingRecord
	b, err = g.storage.Load(ctx, key)
	if err == nil {
		err = json.Unmarshal(b, &got)
	}
	if err != nil || got.Node != "b" || got.Commit != "beef" {
		t.Errorf("after a's release the lease is %+v (%v), want b's, untouched", got, err)
	}
}

// The renewer renews the lease while it is held, goes on after a panic in
// one renewal (logged, counted as a storage error), and stops once another
// node took the lease over, never overwriting it. On main a panic in the
// renewer ended the process.
func TestClusterLeaseRenews(t *testing.T) {
	g := newGroup(t)
	cfg := g.config("a", filepath.Join(t.TempDir(), "a"))
	// The first renewal panics; another node takes the lease over, as
	// the renewer is about to read it, once the test allows.
	var renewals atomic.Int32
	var takeOver atomic.Bool
	other := buildingRecord{Version: recordVersion, Node: "b", Commit: "beef", Since: time.Now(), Expires: time.Now().Add(time.Hour)}
	fault := WithFault(func(step, commit string) {
		if step != FaultRenew {
			return
		}
		if renewals.Add(1) == 1 {
			panic("boom in the renewer of " + commit)
		}
		if takeOver.Load() {
			b, _ := json.Marshal(other)
			if err := g.storage.Store(context.Background(), "github_webhook/clusters/blog/building", b); err != nil {
				t.Error(err)
			}
		}
	})
	core, logs := observer.New(zapcore.DebugLevel)
	d, err := New(cfg, zap.New(core), fault, withLeaseRenew(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(context.Background())
	ctx := context.Background()
	l, _, err := d.claimLease(ctx, cfg.Cluster, "c0ffee")
	if err != nil || l == nil {
		t.Fatalf("claim: %v, %v", l != nil, err)
	}
	read := func() buildingRecord {
		cur, err := readLeaseRecord(ctx, cfg.Cluster)
		if err != nil {
			t.Fatal(err)
		}
		return cur
	}
	first := read().Expires
	waitFor(t, "a renewal after the panic", func() bool { return read().Expires.After(first) })
	if n := logs.FilterMessage("panicked").Len(); n != 1 {
		t.Errorf("%d panicked entries logged, want 1", n)
	}
	if cs := d.Status().Cluster; cs == nil || !strings.Contains(cs.Error, "boom in the renewer of c0ffee") {
		t.Errorf("cluster status after the renewer panicked: %+v", cs)
	}
	if cur := read(); cur.Node != "a" || cur.Commit != "c0ffee" {
		t.Errorf("lease after renewals: %+v, want a's", cur)
	}

	takeOver.Store(true)
	waitFor(t, "the renewer to see the takeover", func() bool {
		select {
		case <-l.done:
			return true
		default:
			return false
		}
	})
	if cur := read(); cur.Node != "b" || !cur.Expires.Equal(other.Expires) {
		t.Errorf("after the takeover the lease is %+v, want b's, untouched", cur)
	}
	l.release(ctx)
	if cur := read(); cur.Node != "b" {
		t.Errorf("after a's release the lease is %+v, want b's", cur)
	}
}

// A lease of a version this node does not know is an error that says so,
// not a lease to take over; one without a version is version 1.
func TestClusterLeaseVersions(t *testing.T) {
	g := newGroup(t)
	d, cfg := g.unstarted("a")
	ctx := context.Background()
	key := "github_webhook/clusters/blog/building"
	exp := time.Now().Add(buildLease).UTC().Format(time.RFC3339Nano)
	g.storage.Store(ctx, key, []byte(`{"version":2,"node":"b","expires":"`+exp+`"}`))
	l, _, err := d.claimLease(ctx, cfg.Cluster, "c0ffee")
	var ve *versionError
	if l != nil || !errors.As(err, &ve) || !strings.Contains(err.Error(), "version 2") {
		t.Errorf("claim over a version 2 lease: %v, %v", l != nil, err)
	}
	g.storage.Store(ctx, key, []byte(`{"node":"b","expires":"`+exp+`"}`))
	l, holder, err := d.claimLease(ctx, cfg.Cluster, "c0ffee")
	if l != nil || err != nil || holder == nil || holder.Node != "b" || holder.Version != 1 {
		t.Errorf("claim over a lease without a version: %v, %+v, %v", l != nil, holder, err)
	}
}
