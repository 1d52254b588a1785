package deployer

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"time"
)

// Storage is what the nodes of a group share: a key-value store with
// distributed locks whose expiry the storage handles. certmagic.Storage
// (Caddy's configured storage, ctx.Storage()) satisfies it as it is.
type Storage interface {
	// Lock blocks until it holds the lock name, or ctx ends.
	Lock(ctx context.Context, name string) error
	Unlock(ctx context.Context, name string) error
	Store(ctx context.Context, key string, value []byte) error
	// Load returns an error that matches fs.ErrNotExist when key is missing.
	Load(ctx context.Context, key string) ([]byte, error)
	Delete(ctx context.Context, key string) error
	List(ctx context.Context, path string, recursive bool) ([]string, error)
}

// DefaultClusterPoll is how often a node reads its group's live record when
// Cluster.Poll is zero.
const DefaultClusterPoll = 2 * time.Second

// Cluster joins a target to a group of nodes that share deploys through
// Storage: one node builds a commit, stores the published tree as an
// archive and the group's live record, and every node serves it.
type Cluster struct {
	// Name is the group: targets with the same name in the same storage
	// form it. It matches [A-Za-z0-9._-]{1,64}.
	Name string
	// Node is this node's id, stable across restarts and unique in the
	// group.
	Node string
	// Host is a label for people, such as the host name.
	Host string
	// Storage is where the group keeps its records, archives and lock.
	Storage Storage
	// Poll is how often the group's storage is read while no other node
	// builds (one read: the build lease, which says whether live moved);
	// zero means DefaultClusterPoll. While another node holds the build
	// lease, live is read every DefaultFastWatch.
	Poll time.Duration
}

// clusterName is what a group's name may be: it becomes a storage key.
var clusterName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// ValidateClusterName reports whether name can name a group.
func ValidateClusterName(name string) error {
	if !clusterName.MatchString(name) || name == "." || name == ".." {
		return fmt.Errorf("cluster name %q must be 1 to 64 letters, digits, '.', '_' or '-'", name)
	}
	return nil
}

// validate reports whether c can join a group.
func (c *Cluster) validate() error {
	if err := ValidateClusterName(c.Name); err != nil {
		return err
	}
	if c.Node == "" || !validReleaseName(c.Node) || len(c.Node) > 128 {
		return fmt.Errorf("cluster node id %q must be a non-empty name without slashes", c.Node)
	}
	if c.Storage == nil {
		return fmt.Errorf("cluster %s: no storage", c.Name)
	}
	if c.Poll < 0 {
		return fmt.Errorf("cluster poll %s must be positive", c.Poll)
	}
	return nil
}

func (c *Cluster) poll() time.Duration {
	if c.Poll <= 0 {
		return DefaultClusterPoll
	}
	return c.Poll
}

// Storage keys of a group, all under github_webhook/clusters/<name>/.
func (c *Cluster) prefix() string               { return "github_webhook/clusters/" + c.Name + "/" }
func (c *Cluster) liveKey() string              { return c.prefix() + "live" }
func (c *Cluster) lockName() string             { return c.prefix() + "build" }
func (c *Cluster) buildingKey() string          { return c.prefix() + "building" }
func (c *Cluster) archivesKey() string          { return c.prefix() + "archives" }
func (c *Cluster) nodesKey() string             { return c.prefix() + "nodes" }
func (c *Cluster) nodeKey(node string) string   { return c.nodesKey() + "/" + node }
func (c *Cluster) archiveKey(rel string) string { return c.archivesKey() + "/" + rel + archiveExt }

// partKey is the storage key of part i of release rel's archive: part 0 is
// at the archive's key (where a record without parts has the whole).
func (c *Cluster) partKey(rel string, i int) string {
	if i == 0 {
		return c.archiveKey(rel)
	}
	return c.archiveKey(rel) + "." + strconv.Itoa(i)
}

// GroupLive is the group's live record as Status shows it: the release
// every node of the group serves. What nodes share in storage is
// liveRecord, a format of its own.
type GroupLive struct {
	Commit  string `json:"commit"`
	Release string `json:"release"`
	// Archive is the storage key of the release's published tree (of its
	// first part).
	Archive string `json:"archive"`
	// Digest is the archive's SHA-256, as "sha256:<hex>".
	Digest string `json:"digest"`
	// Size is the archive's size in bytes.
	Size int64 `json:"size"`
	// Node is the node that built the release, or that rolled the group
	// back to it.
	Node string    `json:"node"`
	At   time.Time `json:"at"`
	// PinnedFrom is the commit rolled back from: start-up and poll on any
	// node leave it alone until the branch moves.
	PinnedFrom string `json:"pinned_from,omitempty"`
}

// recordVersion is the version of the records nodes share in storage
// (liveRecord, nodeRecord, buildingRecord) that this code writes and reads.
// A record without a version was written before records had one: it is
// version 1. A change that older nodes would misread takes a new version,
// which they refuse (versionError) rather than misread.
const recordVersion = 1

// versionError is a stored record of a version this node cannot read.
type versionError struct {
	what    string
	version int
}

func (e *versionError) Error() string {
	return fmt.Sprintf("%s is of version %d, this node reads up to version %d: upgrade this node", e.what, e.version, recordVersion)
}

// decodeRecord reads the stored record b into v, whose version field is
// version: a record without one is version 1; a version above
// recordVersion is a *versionError.
func decodeRecord(b []byte, v any, version *int) error {
	if err := json.Unmarshal(b, v); err != nil {
		return err
	}
	if *version == 0 {
		*version = 1
	}
	if *version < 1 || *version > recordVersion {
		return &versionError{what: "the record", version: *version}
	}
	return nil
}

// liveRecord is the group's live record as stored (key `live`): the
// release every node of the group serves, and where its archive is.
type liveRecord struct {
	Version int    `json:"version"`
	Commit  string `json:"commit"`
	Release string `json:"release"`
	// Archive is the storage key of the archive (of its first part).
	Archive string `json:"archive"`
	// Digest is the archive's SHA-256, as "sha256:<hex>".
	Digest string `json:"digest"`
	// Size is the archive's size in bytes.
	Size int64 `json:"size"`
	// Parts are the archive's parts, in order: the archive is their
	// bytes one after the other. A record without parts (written before
	// archives were stored in parts) has the whole archive at Archive.
	Parts []ArchivePart `json:"parts,omitempty"`
	// Unpacked is what the archive's files hold, in bytes: a follower
	// refuses an archive whose headers declare more, or that the disk
	// has no room for, before it writes them. Zero in a record written
	// before it was recorded.
	Unpacked int64 `json:"unpacked,omitempty"`
	// Node is the node that built the release, or that rolled the group
	// back to it.
	Node string    `json:"node"`
	At   time.Time `json:"at"`
	// PinnedFrom is the commit rolled back from: start-up and poll on any
	// node leave it alone until the branch moves.
	PinnedFrom string `json:"pinned_from,omitempty"`
}

// status is r as Status shows it.
func (r *liveRecord) status() *GroupLive {
	return &GroupLive{Commit: r.Commit, Release: r.Release, Archive: r.Archive, Digest: r.Digest, Size: r.Size,
		Node: r.Node, At: r.At, PinnedFrom: r.PinnedFrom}
}

// nodeRecord is what a node serves, as stored (key `nodes/<id>`).
type nodeRecord struct {
	Version int       `json:"version"`
	Node    string    `json:"node"`
	Host    string    `json:"host"`
	Commit  string    `json:"commit"`
	Release string    `json:"release"`
	Since   time.Time `json:"since"`   // when it began serving Release
	Updated time.Time `json:"updated"` // when it wrote this record
}

// NodeStatus is one node of the group, as its record in storage says.
type NodeStatus struct {
	Node    string    `json:"node"`
	Host    string    `json:"host"`
	Commit  string    `json:"commit"`
	Release string    `json:"release"`
	Since   time.Time `json:"since"`
	Updated time.Time `json:"updated"`
	// Converged says the node serves the group's live release.
	Converged bool `json:"converged"`
	// Self marks this node.
	Self bool `json:"self"`
	// Stale says the node has not written its record for 15 minutes
	// (a running node rewrites it every 5): it is down or gone, and
	// not counted in ClusterStatus.Converged. Delete the storage key
	// nodes/<id> of a node that left the group for good.
	Stale bool `json:"stale,omitempty"`
}

// ClusterStatus is the group of a target, as this node last read it.
type ClusterStatus struct {
	Name string `json:"name"`
	Node string `json:"node"` // this node's id
	// Live is the group's live record as last read; nil before any.
	Live *GroupLive `json:"live"`
	// Nodes are the records of every node, this one included, sorted by
	// node id.
	Nodes []NodeStatus `json:"nodes"`
	// Converged says every listed node that is not stale serves
	// Live.Release.
	Converged bool `json:"converged"`
	// Behind is how long this node has not served Live (0 when it does).
	Behind Seconds `json:"behind"`
	// Error is the last storage error; empty once a read works again.
	Error string `json:"error,omitempty"`
	// StorageErrors counts the storage calls that failed since start.
	StorageErrors int `json:"storage_errors"`
	// ReadAt is when this node last knew the group's live record: it
	// read it, or read a build lease that says it has not moved since.
	ReadAt time.Time `json:"read_at"`
}
