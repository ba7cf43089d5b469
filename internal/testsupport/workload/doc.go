// Package workload builds the sample workload that every test tier scales: the sample app's
// Deployment (test/images/sampleapp) and the ElastiService that puts it behind elasti. The e2e
// tier and the cold-start benchmark run it; envtest, which runs no pods, uses the same objects so
// that every tier scales the same thing.
package workload
