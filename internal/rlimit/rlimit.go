package rlimit

import "syscall"

// RaiseNoFile lifts the soft open-file limit to the hard one. It is best effort: a process that
// cannot raise it runs with the limit it has.
func RaiseNoFile() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}
