// Package proxy is the resolver's one reverse proxy, built once and shared by every request:
// Rewrite points each request at the upstream chosen earlier in the chain, one Transport per
// protocol (HTTP/1.1 with upgrades, h2c for HTTP/2 callers such as gRPC) is shared by all
// targets, and a refused dial is retried before any byte is sent, so a request is forwarded
// exactly once.
package proxy
