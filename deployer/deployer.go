package deployer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Backoff of a failed fetch: it doubles from retryBase up to retryMax. A new
// wake retries at once.
const (
	retryBase = 2 * time.Second
	retryMax  = 5 * time.Minute
)

// Deployer is the worker of one target folder. Its methods are safe for
// concurrent use.
type Deployer struct {
	path string
	logp atomic.Pointer[zap.Logger]
	lock *os.File // held from Start until Close

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	wakeC  chan struct{} // one slot: wakes coalesce
	reconf chan struct{} // one slot: the poll interval may have changed

	now  func() time.Time
	opts options // New's Options

	diskMu sync.Mutex // serialises switches of current and writes of state

	// repo is the cache repository: Path/cache.git, the site's for a
	// preview's target (previews.go); cacheSrc, when set, returns the
	// release folder that cache folders are copied from (a preview's:
	// the site's live release).
	repo       string
	cacheSrc   func() string
	linkParent *Deployer // a preview's site, whose live release it may link from
	// fetchMu: one fetch into the cache repository at a time (the site's,
	// a preview's, housekeeping).
	fetchMu    sync.Mutex
	recoveredC chan struct{} // closed once the worker recovered the folder

	// Only the worker goroutine uses these.
	cat  *catFile     // the long-lived git cat-file; nil until needed
	made *madeRelease // what reuseSpare wrote into the release being built
	// cleanConfig is the cache repository's config as last found clean.
	cleanConfig []byte

	mu       sync.Mutex // guards what follows
	cfg      Config
	pending  Reason // strongest reason since the last deploy began; "" if none
	resolved string // the remote HEAD's branch, when cfg.Branch is empty
	st       state
	liveAt   time.Time
	running  *Running
	last     *Result
	checked  *Checked
	checks   uint64 // wakes handled
	// gateFailed is the tip Config.Gate failed last; asked again only for
	// a reason that rechecks.
	gateFailed gateFailure
	started    bool
	closed     bool
	group      groupState // Config.Cluster's group, as last read

	hist     history    // the last deploys, in Path/history.jsonl (history.go)
	previews previewSet // Config.Previews's previews (previews.go)
}

// New returns the worker of cfg.Path, not started: it touches neither the
// disk nor git. Wakes before Start are kept for it. A caller that deploys
// passes no opts: they are for tests (see Option).
func New(cfg Config, logger *zap.Logger, opts ...Option) (*Deployer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &Deployer{
		path:   cfg.Path,
		repo:   filepath.Join(cfg.Path, cacheName),
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
		wakeC:  make(chan struct{}, 1),
		reconf: make(chan struct{}, 1),
		now:    time.Now,
		opts:   defaultOptions(),
		cfg:    cfg,
	}
	for _, o := range opts {
		o(&d.opts)
	}
	d.SetLogger(logger)
	return d, nil
}

// nonDumpable makes the process non-dumpable once, when the first deployer
// starts: see makeNonDumpable.
var nonDumpable sync.Once

// Start makes the process non-dumpable (so that builds of the same user
// cannot read its environment or memory through /proc), creates the folder
// if needed, locks it against other processes and starts the worker, which
// recovers from whatever ended the last process and then deploys, in the
// background: Start does no git work. Until the first release is live,
// current points at a page that says the site is being deployed (see
// startPlaceholder). Starting again is a no-op. It returns
// ErrBusy when another process holds the folder.
func (d *Deployer) Start() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	if d.started {
		return nil
	}
	nonDumpable.Do(func() {
		if err := makeNonDumpable(); err != nil {
			d.log().Warn("cannot make the process non-dumpable: builds of the same user can read its environment", zap.Error(err))
		}
	})
	if err := os.MkdirAll(filepath.Join(d.path, releasesName), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", d.path, err)
	}
	lock, err := lockPath(d.path)
	if err != nil {
		return err
	}
	d.lock = lock
	d.startPlaceholder(d.cfg.Repo)
	d.started = true
	d.recoveredC = make(chan struct{})
	d.startPreviews(d.recoveredC)
	go d.loop()
	return nil
}

// SetLogger sets where the deployer logs from now on, as when a new
// configuration brings its own logging.
func (d *Deployer) SetLogger(logger *zap.Logger) {
	if logger == nil {
		logger = zap.NewNop()
	}
	d.logp.Store(logger.With(zap.String("path", d.path)))
}

func (d *Deployer) log() *zap.Logger { return d.logp.Load() }

// Wake asks the worker to bring the site to the branch's tip. It never
// blocks. Wakes coalesce: however many come during a deploy, at most one
// more deploy follows it, and it deploys the tip as it is then.
func (d *Deployer) Wake(r Reason) {
	d.mu.Lock()
	if d.pending == "" || r.strength() > d.pending.strength() {
		d.pending = r
	}
	d.mu.Unlock()
	select {
	case d.wakeC <- struct{}{}:
	default:
	}
}

// Update replaces the configuration from the next deploy on; a deploy that is
// running goes on with the settings it started with. The path cannot change.
func (d *Deployer) Update(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg = cfg.withDefaults()
	if cfg.Path != d.path {
		return fmt.Errorf("path %q cannot change to %q", d.path, cfg.Path)
	}
	d.mu.Lock()
	if cfg.Branch != d.cfg.Branch || cfg.Remote != d.cfg.Remote {
		d.resolved = ""
	}
	d.cfg = cfg
	d.mu.Unlock()
	select {
	case d.reconf <- struct{}{}:
	default:
	}
	return nil
}

// Branch returns the branch that is deployed: the configured one, or the
// remote's default branch once a deploy has resolved it; "" until then.
func (d *Deployer) Branch() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cfg.Branch != "" {
		return d.cfg.Branch
	}
	return d.resolved
}

// Status returns a snapshot of the target.
func (d *Deployer) Status() Status {
	// Read before the lock: a delivery's Wake takes it, and never waits
	// on the disk.
	name := liveRelease(d.path)
	d.mu.Lock()
	defer d.mu.Unlock()
	s := Status{
		Path:     d.path,
		Repo:     d.cfg.Repo,
		Branch:   d.cfg.Branch,
		Remote:   RedactURL(d.cfg.Remote),
		Releases: []string{},
	}
	if s.Branch == "" {
		s.Branch = d.resolved
	}
	if name != "" {
		live := &Live{Release: name, At: d.liveAt}
		if r := d.st.find(name); r != nil {
			live.Commit = r.Commit
		}
		s.Live = live
	}
	if cl := d.cfg.Cluster; cl != nil {
		commit := ""
		if s.Live != nil {
			commit = s.Live.Commit
		}
		s.Cluster = d.clusterStatus(cl, name, commit)
	}
	if d.running != nil {
		r := *d.running
		s.Running = &r
	}
	if d.last != nil {
		l := *d.last
		s.Last = &l
	}
	if d.checked != nil {
		c := *d.checked
		s.Checked = &c
	}
	for i := len(d.st.Releases) - 1; i >= 0; i-- {
		s.Releases = append(s.Releases, d.st.Releases[i].Name)
	}
	s.History = d.hist.newest(historyInStatus, false)
	s.Previews = d.previewStatus()
	return s
}

// Close stops the worker: a running build's process group is killed and no
// goroutine of the Deployer is left once Close returns nil. It returns
// ctx's error if the worker has not stopped by then.
func (d *Deployer) Close(ctx context.Context) error {
	d.mu.Lock()
	started := d.started
	d.closed = true
	d.mu.Unlock()
	d.cancel()
	if !started {
		return nil
	}
	for _, done := range []chan struct{}{d.done, d.previews.done} {
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("stopping the deployer of %s: %w", d.path, ctx.Err())
		}
	}
	return nil
}

// config returns the configuration for one deploy.
func (d *Deployer) config() Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// take returns the pending reason and clears it.
func (d *Deployer) take() Reason {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := d.pending
	d.pending = ""
	return r
}

// loop is the worker goroutine.
func (d *Deployer) loop() {
	defer close(d.done)
	defer d.lock.Close() // drops the flock, even if Close gave up waiting
	defer d.closeCatFile()
	if err := d.hist.load(d.path); err != nil {
		d.log().Warn("reading the deploy history", zap.Error(err))
	}
	d.guard("recovering the folder", "", func() { d.recoverFolder(true) })
	close(d.recoveredC)
	d.Wake(ReasonStartup)

	var (
		retry       *time.Timer
		retryC      <-chan time.Time
		retryReason Reason
		failures    int
		poll        *time.Ticker
		pollC       <-chan time.Time
		pollEvery   time.Duration
		gate        gateBackoff // looks at a tip the gate holds back
		idle        *time.Timer // fires when the worker has been idle a while
		idleC       <-chan time.Time
		watch       *time.Ticker
		watchC      <-chan time.Time
		watchEvery  time.Duration
		watchNow    time.Duration // the watch's period now: watchEvery, or fast (see watchTick)
	)
	stopRetry := func() {
		if retry != nil {
			retry.Stop()
		}
		retry, retryC, failures = nil, nil, 0
	}
	resetPoll := func() {
		every := d.config().Poll
		if every == pollEvery {
			return
		}
		if poll != nil {
			poll.Stop()
			poll, pollC = nil, nil
		}
		pollEvery = every
		if every > 0 {
			poll = time.NewTicker(every)
			pollC = poll.C
		}
	}
	// resetWatch watches the group's storage on Cluster.Poll (faster
	// while another node builds: see watchTick).
	resetWatch := func() {
		var every time.Duration
		if cl := d.config().Cluster; cl != nil {
			every = cl.poll()
		}
		if every == watchEvery {
			return
		}
		if watch != nil {
			watch.Stop()
			watch, watchC = nil, nil
		}
		watchEvery, watchNow = every, every
		if every > 0 {
			watch = time.NewTicker(every)
			watchC = watch.C
		}
	}
	defer func() {
		stopRetry()
		gate.stop()
		if poll != nil {
			poll.Stop()
		}
		if idle != nil {
			idle.Stop()
		}
		if watch != nil {
			watch.Stop()
		}
	}()
	resetPoll()
	resetWatch()

	for {
		select {
		case <-d.ctx.Done():
			return
		case <-d.reconf:
			resetPoll()
			resetWatch()
			continue
		case <-watchC:
			next := watchEvery
			d.guard("watching the group", ReasonGroup, func() { next = d.watchTick() })
			if next > 0 && next != watchNow {
				watch.Reset(next)
				watchNow = next
			}
			continue
		case <-pollC:
			d.Wake(ReasonPoll)
			continue
		case <-retryC:
			retry, retryC = nil, nil
			d.Wake(retryReason)
			continue
		case <-gate.C:
			gate.stop()
			d.Wake(ReasonRetry)
			continue
		case <-idleC:
			idle, idleC = nil, nil
			d.guard("housekeeping", "", d.maintain)
			continue
		case <-d.wakeC:
		}
		reason := d.take()
		if reason == "" {
			continue
		}
		var err error
		d.guard("deploying", reason, func() {
			d.fault(FaultDeploy, string(reason))
			err = d.deploy(reason)
		})
		if idle != nil {
			idle.Stop()
		}
		idle = time.NewTimer(d.opts.idleAfter)
		idleC = idle.C
		if d.ctx.Err() == nil {
			// Record what this node serves now, and see the group.
			d.guard("watching the group", ReasonGroup, d.watchGroup)
		}
		var gw *gateWait
		if errors.As(err, &gw) && d.ctx.Err() == nil {
			stopRetry()
			base, maxWait, limit := d.opts.gateBase, d.opts.gateMax, d.opts.gateFor
			if wait, ok := gate.next(gw.commit, d.now(), base, maxWait, limit); ok {
				d.log().Info("looking at the tip's checks again", zap.String("commit", gw.commit), zap.Duration("in", wait))
			} else {
				d.log().Warn("stopped looking at the tip's checks on a timer: it waited too long; a check that completes, poll or a manual deploy looks again",
					zap.String("commit", gw.commit), zap.Duration("waited", limit))
			}
			continue
		}
		gate.stop()
		var fe *fetchError
		var se *storageError
		if errors.As(err, &se) && d.ctx.Err() == nil {
			// The watch wakes it again as soon as storage answers.
			d.mu.Lock()
			d.group.retry = retryReasonOf(reason)
			d.mu.Unlock()
		}
		if (errors.As(err, &fe) || se != nil) && d.ctx.Err() == nil {
			failures++
			wait := d.opts.retryBase << min(failures-1, 16)
			if wait > retryMax || wait <= 0 {
				wait = retryMax
			}
			if retry != nil {
				retry.Stop()
			}
			retry = time.NewTimer(wait)
			retryC = retry.C
			retryReason = retryReasonOf(reason)
			d.log().Info("retrying the deploy", zap.Duration("in", wait), zap.Int("failures", failures), zap.Error(err))
			continue
		}
		stopRetry()
	}
}

func (d *Deployer) setRunning(r *Running) {
	d.mu.Lock()
	d.running = r
	d.mu.Unlock()
}

// notify passes e to the Notify of the configuration in force now: a deploy
// that spans a reload reports to the new configuration.
func (d *Deployer) notify(e Event) {
	notify := d.config().Notify
	if notify == nil {
		return
	}
	e.Path = d.path
	if e.At.IsZero() && e.Kind != EventRecovered {
		e.At = d.now()
	}
	notify(e)
}

// retryReasonOf is the reason a deploy for r that failed to reach the
// remote or the storage is retried with: a delivery's, retried, still
// counts as a delivery.
func retryReasonOf(r Reason) Reason {
	if r.strength() == 0 {
		return ReasonRetry
	}
	return r
}

// liveRelease returns the name of the release path/current points to, or "".
func liveRelease(path string) string {
	target, err := os.Readlink(filepath.Join(path, currentName))
	if err != nil {
		return ""
	}
	parts := strings.Split(filepath.ToSlash(filepath.Clean(target)), "/")
	if len(parts) < 2 || parts[0] != releasesName {
		return ""
	}
	return parts[1]
}

// short abbreviates a commit to the 12 hex digits that logs, errors and
// release names show.
func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}
