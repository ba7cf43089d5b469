//go:build !linux

package handler

import "net"

// peerClosed cannot ask the kernel here; the request context is the only signal.
func peerClosed(net.Conn) bool { return false }
