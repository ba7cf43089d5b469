// Package rlimit raises the process's open-file limit. The resolver holds a socket per waiting
// request, and the benchmarks open thousands of connections, so all of them start with
// RaiseNoFile; it is here, outside any test package, because the resolver's main needs it too.
package rlimit
