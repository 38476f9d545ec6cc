// Package netnsutil runs code inside a Linux network namespace, and
// creates namespaces, without moving the calling goroutine's OS thread.
//
// A thread's network namespace decides which namespace the sockets it
// opens, the netlink requests it sends and the /proc/sys/net entries it
// opens belong to. Go moves goroutines between threads, so the work is
// done on a fresh goroutine locked to its thread, and the thread is put
// back into its namespace afterwards. If that fails the thread stays
// locked: the runtime then ends it with its goroutine instead of reusing
// it for other goroutines in the wrong namespace.
//
// The package is Linux only.
package netnsutil
