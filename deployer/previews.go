package deployer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Previews of pull requests: every open pull request against the deployed
// branch gets a small target of its own under Path/previews/<host>/
// (releases/, current, preview.json, its own build cache home and sandbox
// home), built from refs/pull/<number>/head of the remote, fetched into the
// site's cache repository under refs/previews/<number>. One release is
// kept.
//
// Production first: previews are built by a worker of their own, one at a
// time, and only while the site's worker is idle; when the site's worker
// starts a build, a preview build in progress is cancelled (its process
// group killed) and queued again. The only step the two share is the
// fetch into the cache repository (git's shallow and ref locks allow one
// at a time): the site may wait for one preview fetch to end, never for a
// build.

// Defaults of Previews.
const (
	DefaultPreviewMax = 10
	DefaultPreviewTTL = 14 * 24 * time.Hour
)

// Previews configures the previews of pull requests (Config.Previews).
type Previews struct {
	// Host is the template of a preview's host name: "{number}" in it is
	// the pull request's number, as in pr-{number}.preview.example.com.
	// The preview lives in Path/previews/<host>/ and is served from its
	// current, and its DEPLOY_URL is https://<host>/.
	Host string
	// Max is how many previews may exist at once; a pull request beyond
	// gets none, and the answer says "limit". Zero means DefaultPreviewMax.
	Max int
	// TTL removes a preview that was not updated (opened, pushed to,
	// built) for this long. Zero means DefaultPreviewTTL.
	TTL time.Duration
	// Refs is where the remote keeps pull requests' heads, as
	// Refs/<number>/head: PullRequestRefs (the default, for an empty
	// Refs: GitHub, Gitea, Forgejo) or MergeRequestRefs (GitLab).
	Refs string
	// ForksLabel, when set, lets pull requests from forks have a preview,
	// built only for the head commit that was labelled with it (see
	// PullRequest). Empty: forks get no preview. Needs Config.Sandbox.
	ForksLabel string
	// Notify, when set, is called on the previews' worker goroutine for
	// what happens to a preview (see PreviewEvent). It must not block.
	Notify func(PreviewEvent)
}

// PreviewEvent is something that happened to a preview.
type PreviewEvent struct {
	Kind   string // one of the Preview* kinds
	Number int
	Host   string
	URL    string
	Commit string
	Err    error // for PreviewFailed
}

// Kinds of PreviewEvent.
const (
	PreviewStarted   = "preview_started"
	PreviewSucceeded = "preview_succeeded" // Commit is live at URL
	PreviewFailed    = "preview_failed"
	PreviewRemoved   = "preview_removed"
	// PreviewWaitingLabel: a fork's head is not built: it is not the
	// commit that was labelled.
	PreviewWaitingLabel = "preview_waiting_label"
)

// PullRequest is what a pull request delivery says, as far as previews go.
// Its fields are facts of a signed delivery: they choose which preview is
// woken, never what is built (that is refs/pull/<number>/head as the
// remote has it).
type PullRequest struct {
	Number int
	// Action: "opened", "reopened", "synchronize", "ready_for_review"
	// wake the preview, "closed" removes it, "labeled" with
	// Previews.ForksLabel approves a fork's Head.
	Action string
	// Head is the head commit when the delivery was sent.
	Head string
	// Fork reports that the head lives in another repository.
	Fork bool
	// Label is the label added, for "labeled".
	Label string
}

// PreviewAnswer is what PullRequest did: Queued when a preview was woken or
// is being removed; otherwise Reason says why nothing was done ("limit",
// "forks off"...).
type PreviewAnswer struct {
	Queued bool
	Reason string
}

// ErrUnknownPreview: no preview of that number exists.
var ErrUnknownPreview = errors.New("deployer: no such preview")

// States of a preview, in PreviewStatus.State.
const (
	PreviewQueued   = "queued"
	PreviewBuilding = "building"
	PreviewLive     = "live"
	PreviewError    = "failed"
	// PreviewWaiting: a fork's head that nobody labelled; what is live (if
	// anything) stays.
	PreviewWaiting = "waiting"
)

// PreviewStatus is one preview, in Status.Previews.
type PreviewStatus struct {
	Number int    `json:"number"`
	Host   string `json:"host"`
	URL    string `json:"url"`
	// Head is the pull request's head as last fetched.
	Head string `json:"head,omitempty"`
	// Live is the commit the preview serves; "" until one is built.
	Live   string    `json:"live,omitempty"`
	State  string    `json:"state"`
	Fork   bool      `json:"fork,omitempty"`
	Error  string    `json:"error,omitempty"`
	Update time.Time `json:"updated"`
}

const (
	previewsName      = "previews"
	previewRecordName = "preview.json"
)

// previewRecord is what Path/previews/<host>/preview.json keeps.
type previewRecord struct {
	Number int    `json:"number"`
	Host   string `json:"host"`
	Fork   bool   `json:"fork,omitempty"`
	// Approved is the fork's head commit that was labelled: the only one
	// that is built.
	Approved string    `json:"approved,omitempty"`
	Head     string    `json:"head,omitempty"`
	Live     string    `json:"live,omitempty"`
	State    string    `json:"state"`
	Error    string    `json:"error,omitempty"`
	Updated  time.Time `json:"updated"`
	// Group: the group's record of previews lists this one (see
	// cluster_previews.go); once it no longer does, it is removed here.
	Group bool `json:"group,omitempty"`
}

// preview is one preview in memory.
type preview struct {
	rec   previewRecord
	child *Deployer // the preview's own target, not started: see previewTarget
	busy  sync.Mutex
	// removed: the preview is gone; a build in progress stops.
	removed bool
}

// previewSet is the Deployer's previews; guarded by Deployer.mu.
type previewSet struct {
	byNumber map[int]*preview
	queue    []int
	wake     chan struct{}
	// cancel ends the preview build in progress; running is its number.
	cancel  context.CancelFunc
	running int
	// yielded: the build in progress was cancelled for the site's own.
	yielded bool
	removes sync.WaitGroup
	stopped bool // the worker no longer waits for removals: RemovePreview removes inline
	done    chan struct{}
	loaded  chan struct{} // closed once the previews on disk are known
	// groupRaw is the group's record of previews as last read (nil: read
	// again); groupNew: the worker has not followed it yet.
	groupRaw []byte
	groupNew bool
}

// previewsDir is Path/previews.
func (d *Deployer) previewsDir() string { return filepath.Join(d.path, previewsName) }

// previewHost returns the host of number's preview under p.
func previewHost(p *Previews, number int) string {
	return strings.ToLower(strings.ReplaceAll(p.Host, "{number}", strconv.Itoa(number)))
}

func (p *Previews) max() int {
	if p.Max <= 0 {
		return DefaultPreviewMax
	}
	return p.Max
}

func (p *Previews) ttl() time.Duration {
	if p.TTL <= 0 {
		return DefaultPreviewTTL
	}
	return p.TTL
}

// Where forges keep the heads of pull requests, for Previews.Refs.
const (
	PullRequestRefs  = "refs/pull"           // GitHub, Gitea, Forgejo
	MergeRequestRefs = "refs/merge-requests" // GitLab
)

// headRef is the remote's ref of pull request number's head.
func (p *Previews) headRef(number int) string {
	refs := p.Refs
	if refs == "" {
		refs = PullRequestRefs
	}
	return refs + "/" + strconv.Itoa(number) + "/head"
}

// validate checks p for Config.Validate.
func (p *Previews) validate(c Config) error {
	if r := p.Refs; r != "" && (!strings.HasPrefix(r, "refs/") || strings.HasSuffix(r, "/") ||
		strings.Contains(r, "..") || strings.Contains(r, "//") || strings.ContainsAny(r, " \t\n:^~?*[\\")) {
		return fmt.Errorf("previews: refs %q is not a ref namespace such as refs/pull", r)
	}
	if !strings.Contains(p.Host, "{number}") {
		return fmt.Errorf("previews: host %q must hold {number}", p.Host)
	}
	h := strings.ReplaceAll(p.Host, "{number}", "1")
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return fmt.Errorf("previews: host %q: only letters, digits, '-' and '.' besides {number}", p.Host)
		}
	}
	if strings.HasPrefix(h, ".") || strings.HasPrefix(h, "-") || strings.Contains(h, "..") {
		return fmt.Errorf("previews: host %q is not a host name", p.Host)
	}
	if p.Max < 0 {
		return fmt.Errorf("previews: max %d must be at least 1", p.Max)
	}
	if p.TTL < 0 {
		return fmt.Errorf("previews: ttl %s must be positive", p.TTL)
	}
	if p.ForksLabel != "" && !c.Sandbox {
		return errors.New("previews: forks label needs sandbox: a fork's build runs code nobody reviewed")
	}
	return nil
}

// PullRequest acts on a pull request delivery: wakes, approves or removes
// its preview, and never blocks on git or a build. Without Config.Previews
// it does nothing.
func (d *Deployer) PullRequest(pr PullRequest) PreviewAnswer {
	cfg := d.config()
	pc := cfg.Previews
	if pc == nil {
		return PreviewAnswer{Reason: "previews are off"}
	}
	if pr.Number <= 0 {
		return PreviewAnswer{Reason: "no pull request number"}
	}
	switch pr.Action {
	case "closed":
		if err := d.RemovePreview(pr.Number); err != nil {
			if d.unshareUnknown(cfg, pr.Number) {
				return PreviewAnswer{Queued: true, Reason: "removing the preview from the group"}
			}
			return PreviewAnswer{Reason: "no preview to remove"}
		}
		return PreviewAnswer{Queued: true, Reason: "removing the preview"}
	case "opened", "reopened", "synchronize", "ready_for_review":
	case "labeled":
		if !pr.Fork || pc.ForksLabel == "" || pr.Label != pc.ForksLabel {
			return PreviewAnswer{Reason: "label does not approve a preview"}
		}
	default:
		return PreviewAnswer{Reason: "action " + strconv.Quote(pr.Action) + " is not handled"}
	}
	if pr.Fork && pc.ForksLabel == "" {
		return PreviewAnswer{Reason: "forks off: pull requests from forks get no preview"}
	}
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	ps := &d.previews
	p := ps.byNumber[pr.Number]
	if p == nil {
		if pr.Fork && pr.Action != "labeled" {
			return PreviewAnswer{Reason: "fork: waiting for the label " + strconv.Quote(pc.ForksLabel)}
		}
		if len(ps.byNumber) >= pc.max() {
			return PreviewAnswer{Reason: "limit: " + strconv.Itoa(pc.max()) + " previews exist"}
		}
		host := previewHost(pc, pr.Number)
		p = &preview{rec: previewRecord{Number: pr.Number, Host: host, Fork: pr.Fork, State: PreviewQueued, Updated: now}}
		if ps.byNumber == nil {
			ps.byNumber = map[int]*preview{}
		}
		ps.byNumber[pr.Number] = p
	}
	if pr.Action == "labeled" {
		p.rec.Approved = pr.Head
	}
	p.rec.Fork = p.rec.Fork || pr.Fork
	p.rec.Updated = now
	if !slices.Contains(ps.queue, pr.Number) {
		ps.queue = append(ps.queue, pr.Number)
	}
	if ps.running != pr.Number && p.rec.State != PreviewLive {
		p.rec.State = PreviewQueued
	}
	d.wakePreviews()
	return PreviewAnswer{Queued: true, Reason: "queued"}
}

// wakePreviews wakes the previews' worker; d.mu may be held.
func (d *Deployer) wakePreviews() {
	if d.previews.wake == nil {
		return
	}
	select {
	case d.previews.wake <- struct{}{}:
	default:
	}
}

// RemovePreview removes number's preview: it stops serving at once (its
// current goes), a build of it stops, and its folder goes in the
// background. ErrUnknownPreview when there is none.
func (d *Deployer) RemovePreview(number int) error { return d.removePreview(number, true) }

// removePreview is RemovePreview; group: in the group too (not when the
// group removed it).
func (d *Deployer) removePreview(number int, group bool) error {
	d.mu.Lock()
	p := d.previews.byNumber[number]
	if p == nil {
		d.mu.Unlock()
		return ErrUnknownPreview
	}
	delete(d.previews.byNumber, number)
	d.previews.queue = slices.DeleteFunc(d.previews.queue, func(n int) bool { return n == number })
	p.removed = true
	if d.previews.running == number && d.previews.cancel != nil {
		d.previews.cancel()
	}
	inline := d.previews.stopped || d.previews.done == nil
	if !inline {
		d.previews.removes.Add(1)
	}
	d.mu.Unlock()
	dir := filepath.Join(d.previewsDir(), p.rec.Host)
	// Not served from here on: Caddy finds no current.
	os.Remove(filepath.Join(dir, currentName))
	remove := func() {
		defer func() {
			if v := recover(); v != nil {
				d.log().Error("panicked", zap.String("work", "removing a preview"), zap.Any("panic", v))
			}
		}()
		p.busy.Lock() // a build of it has ended
		defer p.busy.Unlock()
		if p.child != nil {
			p.child.closeCatFile()
		}
		if err := os.RemoveAll(dir); err != nil {
			d.log().Error("removing a preview", zap.Int("number", number), zap.Error(err))
		}
		cfg := d.config()
		if group && cfg.Cluster != nil && cfg.Previews != nil {
			d.unsharePreview(cfg.Cluster, number, p.rec.Host)
		}
		g := d.git(cfg)
		d.fetchMu.Lock()
		g.run(context.WithoutCancel(d.ctx), g.cacheDir, "update-ref", "-d", previewRef(number))
		d.fetchMu.Unlock()
		d.log().Info("removed a preview", zap.Int("number", number), zap.String("host", p.rec.Host))
		if !group {
			return // the node that removed it from the group tells the forge
		}
		d.notifyPreview(cfg, PreviewEvent{Kind: PreviewRemoved, Number: number, Host: p.rec.Host, URL: previewURL(p.rec.Host)})
	}
	if inline {
		remove()
		return nil
	}
	go func() {
		defer d.previews.removes.Done()
		remove()
	}()
	return nil
}

// ReconcilePreviews removes every preview whose pull request is not in
// open (the numbers of the pull requests still open), for a closed
// delivery that never came. On a started Deployer, it waits until the
// previews on disk are known. It returns the numbers removed.
func (d *Deployer) ReconcilePreviews(open []int) []int {
	d.mu.Lock()
	loaded := d.previews.loaded
	d.mu.Unlock()
	if loaded != nil {
		// Those the last process left are known first.
		select {
		case <-loaded:
		case <-d.ctx.Done():
			return nil
		}
	}
	d.mu.Lock()
	var gone []int
	for n := range d.previews.byNumber {
		if !slices.Contains(open, n) {
			gone = append(gone, n)
		}
	}
	d.mu.Unlock()
	slices.Sort(gone)
	for _, n := range gone {
		if d.RemovePreview(n) == nil {
			d.log().Info("removed the preview of a pull request that is not open", zap.Int("number", n))
		}
	}
	return gone
}

// PreviewHost reports whether host is the host of a preview that exists,
// for on-demand TLS: certificates only for those.
func (d *Deployer) PreviewHost(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range d.previews.byNumber {
		if p.rec.Host == host {
			return true
		}
	}
	return false
}

// previewStatus lists the previews, by number; d.mu is held.
func (d *Deployer) previewStatus() []PreviewStatus {
	if d.cfg.Previews == nil && len(d.previews.byNumber) == 0 {
		return nil
	}
	list := []PreviewStatus{}
	for _, p := range d.previews.byNumber {
		r := p.rec
		list = append(list, PreviewStatus{Number: r.Number, Host: r.Host, URL: previewURL(r.Host), Head: r.Head,
			Live: r.Live, State: r.State, Fork: r.Fork, Error: r.Error, Update: r.Updated})
	}
	slices.SortFunc(list, func(a, b PreviewStatus) int { return a.Number - b.Number })
	return list
}

func previewURL(host string) string { return "https://" + host + "/" }

func previewRef(number int) string { return "refs/previews/" + strconv.Itoa(number) }

// loadPreviews reads the previews that Path/previews holds, as the last
// process left them: those that were live serve on as they are (Caddy
// serves their current from disk); half-built releases are removed.
func (d *Deployer) loadPreviews() {
	entries, _ := os.ReadDir(d.previewsDir())
	loaded := map[int]*preview{}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(d.previewsDir(), e.Name())
		b, err := os.ReadFile(filepath.Join(dir, previewRecordName))
		var rec previewRecord
		if err == nil {
			err = json.Unmarshal(b, &rec)
		}
		if err != nil || rec.Host != e.Name() || rec.Number <= 0 || loaded[rec.Number] != nil {
			d.log().Warn("removing a preview folder with no valid record", zap.String("folder", e.Name()))
			os.RemoveAll(dir)
			continue
		}
		p := &preview{rec: rec}
		p.child = d.previewTarget(rec.Host)
		p.child.recoverFolder(false)
		if rec.State == PreviewBuilding || rec.State == PreviewQueued {
			p.rec.State = PreviewQueued
		}
		loaded[rec.Number] = p
	}
	d.mu.Lock()
	d.previews.byNumber = loaded
	for n, p := range loaded {
		if p.rec.State == PreviewQueued {
			d.previews.queue = append(d.previews.queue, n)
		}
	}
	slices.Sort(d.previews.queue)
	d.mu.Unlock()
}

// previewTarget returns the Deployer of a preview's folder: never started,
// driven by the previews' worker. Its git works in the site's cache
// repository.
func (d *Deployer) previewTarget(host string) *Deployer {
	c := &Deployer{
		path:     filepath.Join(d.previewsDir(), host),
		repo:     d.repo,
		ctx:      d.ctx,
		now:      d.now,
		opts:     d.opts,
		cacheSrc: d.liveCacheSource,
		// Without commands, a preview's first release hard-links what
		// it shares with the site's live one: nothing writes into either.
		linkParent: d,
	}
	c.logp.Store(d.log().With(zap.String("preview", host)))
	return c
}

// linkSource returns the release the next one may be linked from (see
// linkable) and its folder: d's live release, or for a preview's first
// build (linkParent), the site's.
func (d *Deployer) linkSource(cfg Config) (releaseRecord, string, bool) {
	if prev, ok := d.linkable(cfg); ok {
		return prev, filepath.Join(d.path, releasesName, prev.Name), true
	}
	if d.linkParent != nil {
		if prev, ok := d.linkParent.linkable(cfg); ok {
			return prev, filepath.Join(d.linkParent.path, releasesName, prev.Name), true
		}
	}
	return releaseRecord{}, "", false
}

// liveCacheSource is the release of the site that a preview's cache
// folders are copied from: the site's live one, "" if none.
func (d *Deployer) liveCacheSource() string {
	live := liveRelease(d.path)
	if live == "" {
		return ""
	}
	return filepath.Join(d.path, releasesName, live)
}

// startPreviews starts the previews' worker, which loads the previews on
// disk once the site's folder is recovered. d.mu is held.
func (d *Deployer) startPreviews(recovered <-chan struct{}) {
	d.previews.wake = make(chan struct{}, 1)
	d.previews.done = make(chan struct{})
	d.previews.loaded = make(chan struct{})
	go d.previewLoop(recovered)
}

// previewLoop is the previews' worker goroutine.
func (d *Deployer) previewLoop(recovered <-chan struct{}) {
	defer close(d.previews.done)
	defer d.closePreviewCatFiles()
	defer func() {
		d.mu.Lock()
		d.previews.stopped = true
		d.mu.Unlock()
		d.previews.removes.Wait()
	}()
	select {
	case <-recovered:
	case <-d.ctx.Done():
		return
	}
	d.guardPreview("loading previews", 0, d.loadPreviews)
	close(d.previews.loaded)
	sweep := time.NewTicker(time.Second)
	defer sweep.Stop()
	d.wakePreviews()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-sweep.C:
			d.sweepPreviews()
			continue
		case <-d.previews.wake:
		}
		d.guardPreview("following the group's previews", 0, d.syncGroupPreviews)
		for d.ctx.Err() == nil {
			if !d.siteIdle() {
				// Production first: look again soon.
				select {
				case <-d.ctx.Done():
					return
				case <-time.After(50 * time.Millisecond):
				}
				continue
			}
			n, p := d.nextPreview()
			if p == nil {
				break
			}
			d.guardPreview("building a preview", n, func() { d.buildPreview(p) })
		}
	}
}

// closePreviewCatFiles ends the cat-file of every preview, as the
// Deployer stops.
func (d *Deployer) closePreviewCatFiles() {
	d.mu.Lock()
	var list []*preview
	for _, p := range d.previews.byNumber {
		list = append(list, p)
	}
	d.mu.Unlock()
	for _, p := range list {
		p.busy.Lock()
		if p.child != nil {
			p.child.closeCatFile()
		}
		p.busy.Unlock()
	}
}

// siteIdle reports whether the site's worker has nothing to do: previews
// start only then.
func (d *Deployer) siteIdle() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.running == nil && d.pending == ""
}

// nextPreview takes the next preview to build off the queue.
func (d *Deployer) nextPreview() (int, *preview) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for len(d.previews.queue) > 0 {
		n := d.previews.queue[0]
		d.previews.queue = d.previews.queue[1:]
		if p := d.previews.byNumber[n]; p != nil {
			return n, p
		}
	}
	return 0, nil
}

// yieldPreview cancels a preview build in progress, which is queued
// again: the site's own build goes first. Called by the site's worker.
func (d *Deployer) yieldPreview() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.previews.cancel != nil && d.previews.running != 0 {
		d.previews.yielded = true
		d.previews.cancel()
	}
}

// sweepPreviews removes previews not updated for the TTL.
func (d *Deployer) sweepPreviews() {
	pc := d.config().Previews
	if pc == nil {
		return
	}
	now := d.now()
	d.mu.Lock()
	var old []int
	for n, p := range d.previews.byNumber {
		if now.Sub(p.rec.Updated) > pc.ttl() && d.previews.running != n {
			old = append(old, n)
		}
	}
	d.mu.Unlock()
	for _, n := range old {
		if d.RemovePreview(n) == nil {
			d.log().Info("removed a preview not updated for its ttl", zap.Int("number", n), zap.Duration("ttl", pc.ttl()))
		}
	}
}

// guardPreview runs fn as guard does, for the previews' worker.
func (d *Deployer) guardPreview(work string, number int, fn func()) {
	defer func() {
		if v := recover(); v != nil {
			d.log().Error("panicked", zap.String("work", work), zap.Int("number", number), zap.Any("panic", v))
			d.mu.Lock()
			d.previews.running, d.previews.cancel = 0, nil
			if p := d.previews.byNumber[number]; p != nil {
				p.rec.State, p.rec.Error = PreviewError, fmt.Sprint(v)
			}
			d.mu.Unlock()
		}
	}()
	fn()
}

// setPreview updates p's record with fn under d.mu, and saves it unless
// p was removed.
func (d *Deployer) setPreview(p *preview, fn func(r *previewRecord)) {
	d.mu.Lock()
	fn(&p.rec)
	rec, removed := p.rec, p.removed
	d.mu.Unlock()
	if removed {
		return
	}
	dir := filepath.Join(d.previewsDir(), rec.Host)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		d.log().Error("saving a preview's record", zap.Error(err))
		return
	}
	b, _ := json.MarshalIndent(rec, "", "  ")
	tmp := filepath.Join(dir, "."+previewRecordName+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err == nil {
		err = os.Rename(tmp, filepath.Join(dir, previewRecordName))
		if err != nil {
			d.log().Error("saving a preview's record", zap.Error(err))
		}
	}
}

// buildPreview fetches p's head and, unless it is live or not approved,
// builds it into p's folder.
func (d *Deployer) buildPreview(p *preview) {
	p.busy.Lock()
	defer p.busy.Unlock()
	cfg := d.config()
	pc := cfg.Previews
	d.mu.Lock()
	if p.removed || pc == nil {
		d.mu.Unlock()
		return
	}
	ctx, cancel := context.WithTimeout(d.ctx, cfg.Timeout)
	defer cancel()
	d.previews.running, d.previews.cancel, d.previews.yielded = p.rec.Number, cancel, false
	rec := p.rec
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.previews.running, d.previews.cancel = 0, nil
		d.mu.Unlock()
	}()
	if err := d.previewChild(p); err != nil {
		return
	}
	n := rec.Number
	url := previewURL(rec.Host)
	d.setPreview(p, func(r *previewRecord) { r.State = PreviewBuilding })

	// Fetch the head as the remote has it: what the delivery said is not
	// what is built.
	g := d.git(cfg)
	d.fetchMu.Lock()
	err := g.initCache(ctx)
	if err == nil {
		args := []string{"fetch", "--quiet", "--no-write-fetch-head", "--force", "--no-auto-maintenance", "--no-tags"}
		args = append(args, depthArgs(cfg.Depth)...)
		args = append(args, "--", g.remote, "+"+cfg.Previews.headRef(n)+":"+previewRef(n))
		_, err = g.runRemote(ctx, g.cacheDir, args...)
	}
	var head string
	if err == nil {
		// The preview's own cat-file, kept while the preview exists: no
		// process to start for this, nor for the diff of the build.
		err = p.child.withCatFile(ctx, g, func(c *catFile) (err error) {
			head, err = c.resolve(previewRef(n))
			return err
		})
	}
	d.fetchMu.Unlock()
	if err != nil {
		if d.requeueIfYielded(p) {
			return
		}
		d.log().Warn("fetching a preview's head", zap.Int("number", n), zap.Error(err))
		d.setPreview(p, func(r *previewRecord) { r.State, r.Error = PreviewError, "fetching the head: "+err.Error() })
		d.notifyPreview(cfg, PreviewEvent{Kind: PreviewFailed, Number: n, Host: rec.Host, URL: url, Err: err})
		return
	}
	if rec.Fork && head != rec.Approved {
		// The label approved another commit (or none): a push after the
		// label waits for the label again; a replayed old label never
		// approves a newer head.
		d.log().Info("not building a fork's head that was not labelled", zap.Int("number", n), zap.String("commit", head))
		d.setPreview(p, func(r *previewRecord) { r.Head, r.State, r.Error = head, PreviewWaiting, "" })
		d.notifyPreview(cfg, PreviewEvent{Kind: PreviewWaitingLabel, Number: n, Host: rec.Host, URL: url, Commit: head})
		return
	}
	var store func(name, pub string) error
	var shared *liveRecord
	if cfg.Cluster != nil {
		// One build of head in the group: the node that holds the
		// preview's lease builds it, the others follow.
		release, done, err := d.claimPreview(ctx, cfg, p, head)
		if d.requeueIfYielded(p) || ctx.Err() != nil && d.ctx.Err() != nil || done {
			return
		}
		if err != nil {
			d.log().Warn("a preview's group", zap.Int("number", n), zap.Error(err))
			d.setPreview(p, func(r *previewRecord) { r.Head, r.State, r.Error = head, PreviewError, "the group: "+err.Error() })
			d.notifyPreview(cfg, PreviewEvent{Kind: PreviewFailed, Number: n, Host: rec.Host, URL: url, Commit: head, Err: err})
			return
		}
		defer release()
		store = func(name, pub string) (err error) {
			scfg := cfg
			scfg.Cluster = cfg.Cluster.preview(n)
			shared, err = d.storeArchive(ctx, scfg, head, name, pub, "")
			return err
		}
	}
	if cfg.Cluster == nil && head == rec.Live && liveRelease(p.child.path) != "" {
		d.setPreview(p, func(r *previewRecord) { r.Head, r.State, r.Error = head, PreviewLive, "" })
		return
	}
	d.setPreview(p, func(r *previewRecord) { r.Head = head })
	d.notifyPreview(cfg, PreviewEvent{Kind: PreviewStarted, Number: n, Host: rec.Host, URL: url, Commit: head})

	pcfg := previewConfig(cfg, rec, n)
	child := p.child
	child.mu.Lock()
	child.cfg = pcfg
	child.mu.Unlock()
	start := d.now()
	name := child.releaseName(start, head)
	bg := child.git(pcfg)
	branch := d.Branch()
	d.log().Info("building a preview", zap.Int("number", n), zap.String("commit", head), zap.String("release", name))
	tail, err := child.build(ctx, bg, pcfg, branch, head, name)
	if err == nil {
		err = child.publish(pcfg, head, name, store)
	}
	if err != nil {
		os.RemoveAll(filepath.Join(child.path, releasesName, name))
		child.diskMu.Lock()
		child.mu.Lock()
		child.st.Building = nil
		st := child.st
		child.mu.Unlock()
		st.save(child.path)
		child.diskMu.Unlock()
		if d.requeueIfYielded(p) {
			return
		}
		if ctx.Err() != nil && d.ctx.Err() != nil {
			return // stopping: built again at the next start
		}
		d.log().Warn("preview build failed", zap.Int("number", n), zap.String("commit", head), zap.Error(err), zap.String("output_tail", tail))
		d.setPreview(p, func(r *previewRecord) { r.State, r.Error = PreviewError, err.Error() })
		d.notifyPreview(cfg, PreviewEvent{Kind: PreviewFailed, Number: n, Host: rec.Host, URL: url, Commit: head, Err: err})
		return
	}
	child.prune(pcfg)
	shareErr := ""
	if shared != nil {
		if err := d.sharePreview(ctx, cfg.Cluster, p, shared); err != nil {
			d.log().Warn("sharing a preview with the group; it is live on this node only", zap.Int("number", n), zap.Error(err))
			shareErr = "not shared with the group: " + err.Error()
		}
	}
	d.log().Info("preview live", zap.Int("number", n), zap.String("commit", head), zap.String("url", url),
		zap.Duration("duration", d.now().Sub(start)))
	d.setPreview(p, func(r *previewRecord) {
		r.Live, r.State, r.Error, r.Updated = head, PreviewLive, shareErr, d.now()
	})
	d.notifyPreview(cfg, PreviewEvent{Kind: PreviewSucceeded, Number: n, Host: rec.Host, URL: url, Commit: head})
}

// requeueIfYielded queues p again when its build was cancelled for the
// site's own build, and reports whether it was.
func (d *Deployer) requeueIfYielded(p *preview) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.previews.yielded || p.removed {
		return p.removed
	}
	d.previews.yielded = false
	p.rec.State = PreviewQueued
	if !slices.Contains(d.previews.queue, p.rec.Number) {
		d.previews.queue = append([]int{p.rec.Number}, d.previews.queue...)
	}
	d.log().Info("preview build yielded to the site's build; queued again", zap.Int("number", p.rec.Number))
	d.wakePreviews()
	return true
}

// previewConfig is the configuration of a preview's build: the site's,
// one release kept, with DEPLOY_URL and DEPLOY_PR; a fork's gets no env
// values and no token (its submodules are fetched without it).
func previewConfig(cfg Config, rec previewRecord, number int) Config {
	c := cfg
	c.Path = filepath.Join(cfg.Path, previewsName, rec.Host)
	c.Keep = 1
	if len(c.Commands) == 0 && !c.Submodules {
		// As the site: the release before the live one stays as the
		// spare, which the next build updates in place (only what
		// changed is written and synced). Its files are hard links.
		c.Keep = 2
	}
	c.Poll = 0
	c.Gate = nil
	c.Cluster = nil
	c.Notify = nil
	c.Previews = nil
	c.URL = previewURL(rec.Host)
	c.Env = slices.Clone(cfg.Env)
	if rec.Fork {
		c.Env = nil
		c.Token = ""
	}
	c.Env = append(c.Env, "DEPLOY_PR="+strconv.Itoa(number))
	return c
}

// notifyPreview passes e to Previews.Notify.
func (d *Deployer) notifyPreview(cfg Config, e PreviewEvent) {
	if cfg.Previews == nil || cfg.Previews.Notify == nil {
		return
	}
	defer func() {
		if v := recover(); v != nil {
			d.log().Error("panicked", zap.String("work", "notifying a preview event"), zap.Any("panic", v))
		}
	}()
	cfg.Previews.Notify(e)
}
