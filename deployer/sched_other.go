//go:build unix && !linux

package deployer

import "syscall"

// yieldToServing gives the group of a command, just started, nice
// buildNice: outside Linux there is no SCHED_IDLE class, and children
// forked from then on inherit the nice value.
func yieldToServing(pid int) {
	syscall.Setpriority(syscall.PRIO_PGRP, pid, buildNice)
}
