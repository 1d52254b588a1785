package deployer

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// ErrNoBuildLog is returned by BuildLog for a release whose build log is
// not on disk: it was never built here (a group's follower unpacks what
// another node built), its log was pruned with it, or nothing was built yet.
var ErrNoBuildLog = errors.New("deployer: no build log for that release")

// logPoll is how often a followed build log is looked at again for what
// the build wrote since.
const logPoll = 100 * time.Millisecond

// BuildLog opens the build log of release: the commands' output (and what
// the deployer wrote between them) as the build wrote it beside the
// release. An empty release is the running build's, else the last
// deploy's, else the live release's; the name of the release is returned.
//
// With follow, reading the log of the build that is running waits for
// what it writes next, and ends (io.EOF) once the build has ended and its
// whole log was read; ctx ending, or Close on the reader, ends it sooner.
// Without follow, or for a release not being built, the reader ends at the
// end of the file. A log holds only what the build printed: the variables
// that secret and token read are not in the build's environment.
func (d *Deployer) BuildLog(ctx context.Context, release string, follow bool) (string, io.ReadCloser, error) {
	name := release
	if name == "" {
		name = d.logRelease()
		if name == "" {
			return "", nil, ErrNoBuildLog
		}
	}
	if name == "." || name == ".." || filepath.Base(name) != name || filepath.IsAbs(name) {
		return "", nil, ErrUnknownRelease
	}
	r := &logReader{
		d:      d,
		ctx:    ctx,
		name:   name,
		path:   filepath.Join(d.path, releasesName, name+".log"),
		follow: follow,
		closed: make(chan struct{}),
	}
	if err := r.open(); err != nil {
		return "", nil, err
	}
	if r.f == nil && !(follow && d.building(name)) {
		return "", nil, ErrNoBuildLog
	}
	return name, r, nil
}

// logRelease is the release whose log BuildLog opens when none is named.
func (d *Deployer) logRelease() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.running != nil && d.running.Release != "":
		return d.running.Release
	case d.last != nil && d.last.Release != "" && d.last.Log != "":
		return d.last.Release
	}
	return liveRelease(d.path)
}

// building reports whether name is the release being built now. The build
// closes its log before the deploy stops running, so once this is false
// the log is whole.
func (d *Deployer) building(name string) bool {
	if d.ctx.Err() != nil {
		return false // stopping: the build is killed, nothing more comes
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.running != nil && d.running.Release == name
}

// logReader reads a build log, following it while the build runs.
type logReader struct {
	d      *Deployer
	ctx    context.Context
	name   string
	path   string
	follow bool

	mu        sync.Mutex // guards f: Close may come from another goroutine
	f         *os.File   // nil until the running build has created its log
	ended     bool       // the build was seen to end: read to the end, then EOF
	closed    chan struct{}
	closeOnce sync.Once
}

// open opens the log if it exists; f stays nil if it does not yet.
func (r *logReader) open() error {
	f, err := os.Open(r.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	}
	r.f = f
	return nil
}

func (r *logReader) Read(p []byte) (int, error) {
	for {
		select {
		case <-r.closed:
			return 0, os.ErrClosed
		default:
		}
		n, err := r.readFile(p)
		if n > 0 || err != nil {
			return n, err
		}
		if !r.follow || r.ended {
			return 0, io.EOF
		}
		if !r.d.building(r.name) {
			// Read once more: what the build wrote before it ended.
			r.ended = true
			continue
		}
		t := time.NewTimer(logPoll)
		select {
		case <-t.C:
		case <-r.ctx.Done():
			t.Stop()
			return 0, r.ctx.Err()
		case <-r.closed:
			t.Stop()
			return 0, os.ErrClosed
		}
	}
}

// readFile reads what the file has past what was read; 0 and no error at
// its end, or while it does not exist yet.
func (r *logReader) readFile(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.closed:
		return 0, os.ErrClosed
	default:
	}
	if r.f == nil {
		if err := r.open(); err != nil || r.f == nil {
			return 0, err
		}
	}
	n, err := r.f.Read(p)
	if err == io.EOF {
		err = nil
	}
	return n, err
}

// Close ends a Read waiting for more, and closes the file.
func (r *logReader) Close() error {
	r.closeOnce.Do(func() { close(r.closed) })
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f != nil {
		return r.f.Close()
	}
	return nil
}
