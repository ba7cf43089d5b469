// Package version carries the build's version, set by the Makefile's -ldflags.
package version

// Version is the tree's git description, or "dev".
var Version = "dev"
