package deployer

import (
	"errors"
	"fmt"
)

// Sentinel errors.
var (
	// ErrClosed is returned by calls on a Deployer after Close.
	ErrClosed = errors.New("deployer: closed")
	// ErrUnknownRelease is returned by Rollback for a release that is not on disk.
	ErrUnknownRelease = errors.New("deployer: no such release")
	// ErrNoOlderRelease is returned by Rollback when no kept release is older
	// than the live one.
	ErrNoOlderRelease = errors.New("deployer: no older release to roll back to")
	// ErrRollbackRaced is returned by Rollback in a group when a deploy
	// switched the site, or pruned the release, while the rollback stored
	// the release for the group: nothing changed; roll back again.
	ErrRollbackRaced = errors.New("deployer: a deploy changed the site during the rollback; roll back again")
	// ErrBusy is returned by Start when another process holds the folder
	// (New touches no disk).
	ErrBusy = errors.New("deployer: path is in use by another process")
)

// BuildError is the error of a command that failed: it exited non-zero, was
// killed by the timeout, or could not start.
type BuildError struct {
	Command  string // argv[0] and its arguments, for humans
	ExitCode int    // -1 when it did not exit on its own
	Tail     string // the last lines of its output
	Err      error
}

func (e *BuildError) Error() string {
	return fmt.Sprintf("running %s: %v", e.Command, e.Err)
}

func (e *BuildError) Unwrap() error { return e.Err }

// fetchError marks an error of the fetch step, which is retried with backoff.
type fetchError struct{ err error }

func (e *fetchError) Error() string { return e.err.Error() }
func (e *fetchError) Unwrap() error { return e.err }
