//go:build !linux

package deployer

import (
	"context"
	"errors"
	"os/exec"
)

// limitsAvailable refuses caps outside Linux: they are made with cgroup
// v2, which only Linux has.
func limitsAvailable(*Limits) error {
	return errors.New("limits: capping a build's CPU and memory needs Linux's cgroup v2; this system has none")
}

// buildCgroup is never made outside Linux.
type buildCgroup struct{}

func newBuildCgroup(*Limits, string) (*buildCgroup, error) { return nil, limitsAvailable(nil) }

func (*buildCgroup) remove() {}

func (*buildCgroup) explain(err error) error { return err }

func withBuildCgroup(ctx context.Context, _ *buildCgroup) context.Context { return ctx }

func attachBuildCgroup(context.Context, *exec.Cmd) {}
