package deployer

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// I/O priority classes and ioprio_set's "who" (linux/ioprio.h).
const (
	ioprioClassShift = 13
	ioprioClassIdle  = 3
	ioprioWhoProcess = 1
	ioprioIdle       = ioprioClassIdle << ioprioClassShift
)

// yieldToServing puts the leader of a command's group, just started, where
// the scheduler gives it only what serving leaves: the SCHED_IDLE class
// for its CPU and the idle class for its disk I/O. Whatever it starts from
// then on (git's own children, a build's compilers) inherits both at fork.
// It runs as soon as exec.Cmd.Start returns, which is once the child has
// been executed: the program is still being loaded, so in practice before
// its own code forks anything (a child forked in those microseconds would
// keep the normal class; a class cannot be set in the child between fork
// and exec through os/exec, and forking from a thread of the idle class
// would tie the parent-death signal to that thread's life).
//
// The group also gets nice buildNice, as on other systems: what is left
// where the kernel refuses SCHED_IDLE (a seccomp filter), or should a
// build switch itself back to the normal class. The I/O class
// is best effort (a kernel without an I/O scheduler that reads it ignores
// it). Unprivileged processes may lower their own children so: no
// capability is needed.
func yieldToServing(pid int) {
	syscall.Setpriority(syscall.PRIO_PGRP, pid, buildNice)
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE, Nice: buildNice}
	unix.SchedSetAttr(pid, &attr, 0)
	unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, uintptr(pid), ioprioIdle)
}
