package handler

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// peerClosed asks the kernel for the TCP state of c: CLOSE_WAIT means the caller sent FIN, and
// CLOSE means a reset. Unread bytes in the receive buffer do not hide either.
func peerClosed(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	gone := false
	_ = raw.Control(func(fd uintptr) {
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if err == nil {
			gone = info.State == unix.BPF_TCP_CLOSE_WAIT || info.State == unix.BPF_TCP_CLOSE
		}
	})
	return gone
}
