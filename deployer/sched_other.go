//go:build unix && !linux

package deployer

import "syscall"

// yieldToServing gives the group of a command, just started, nice
// buildNice: outside Linux there is no SCHED_IDLE class, and children
// forked from then on inherit the nice value.
func yieldToServing(pid int) {
	syscall.Setpriority(syscall.PRIO_PGRP, pid, buildNice)
}

// startIdle calls start: outside Linux, yieldToServing lowers the
// command's priority once it started.
func startIdle(start func() error) (release func(), err error) {
	if err := start(); err != nil {
		return nil, err
	}
	return func() {}, nil
}
