// Package throttler holds requests for targets that are not ready. Each target has a lazily
// created entry with a gate, a channel that is closed (a broadcast to every waiter) when the
// target gets ready endpoints and replaced when it loses them. Waits are bounded per target and
// globally, end with the request's context, the hold timeout or the resolver's drain, and never
// poll.
package throttler
