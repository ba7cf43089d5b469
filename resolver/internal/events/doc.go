// Package events adapts typed upsert and delete functions to an informer's event handler, so
// each cache the resolver keeps is a plain type that tests and benchmarks can feed directly.
package events
