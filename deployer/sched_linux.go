package deployer

import (
	"bytes"
	"os"
	"strconv"
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
// been executed. A class cannot be set in the child between fork and exec
// through os/exec (and forking from a thread of the idle class would tie
// the parent-death signal to that thread's life), so a process that the
// leader forked before its class was set would keep the normal one: after
// the leader, every other member of its process group is moved too (a
// sweep of /proc, once). Only a process that left the group in those
// microseconds (setsid) escapes, and it still has nice buildNice.
//
// The group also gets nice buildNice, as on other systems: what is left
// where the kernel refuses SCHED_IDLE (a seccomp filter), or should a
// build switch itself back to the normal class. The I/O class
// is best effort (a kernel without an I/O scheduler that reads it ignores
// it). Unprivileged processes may lower their own children so: no
// capability is needed.
func yieldToServing(pid int) {
	syscall.Setpriority(syscall.PRIO_PGRP, pid, buildNice)
	idle(pid)
	for _, member := range groupMembers(pid) {
		if member != pid {
			idle(member)
		}
	}
}

// idle puts the process pid (its main thread) in the SCHED_IDLE class and
// the idle I/O class.
func idle(pid int) {
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE, Nice: buildNice}
	unix.SchedSetAttr(pid, &attr, 0)
	unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, uintptr(pid), ioprioIdle)
}

// groupMembers lists the processes of the process group pgid, as /proc
// shows them now (nil when /proc cannot be read).
func groupMembers(pgid int) []int {
	d, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	var members []int
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + name + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces and
		// parentheses, so the fields are read after its last ')'.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := bytes.Fields(stat[i+1:])
		if len(f) >= 3 {
			if g, err := strconv.Atoi(string(f[2])); err == nil && g == pgid {
				members = append(members, pid)
			}
		}
	}
	return members
}
