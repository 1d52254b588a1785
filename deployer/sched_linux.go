package deployer

import (
	"runtime"
	"sync"
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

// startIdle calls start, which starts a process (exec.Cmd.Start), on an
// OS thread of its own that is in the SCHED_IDLE class, the idle I/O class
// and at nice buildNice: a child gets all three from the thread that forks
// it, so the command, and all it starts, runs where the scheduler gives it
// only what serving leaves from its first instruction on (set on the child
// after it started, a child that it forked at once would escape: bwrap
// forks at once).
//
// The thread is kept, its goroutine parked, until release is called,
// after the process ended: Linux sends the parent-death signal when the
// thread that started a process ends, so the thread must live as long as
// the process. Then the goroutine returns still locked to the thread, and
// the runtime ends the thread with it: its class never reaches another
// goroutine. Where the kernel refuses the class (a seccomp filter), the
// command starts as it would have, and yieldToServing tries again.
func startIdle(start func() error) (release func(), err error) {
	errc := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE, Nice: buildNice}
		unix.SchedSetAttr(0, &attr, 0)
		unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, 0, ioprioIdle)
		errc <- start()
		<-done
	}()
	if err := <-errc; err != nil {
		close(done)
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }, nil
}

// yieldToServing puts the leader of a command's group, just started, in
// the SCHED_IDLE class and the idle I/O class, and its group at nice
// buildNice: startIdle started it so already, and this is for where the
// thread could not be set so (what the leader forked before it has the
// normal class then).
func yieldToServing(pid int) {
	syscall.Setpriority(syscall.PRIO_PGRP, pid, buildNice)
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE, Nice: buildNice}
	unix.SchedSetAttr(pid, &attr, 0)
	unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, uintptr(pid), ioprioIdle)
}
