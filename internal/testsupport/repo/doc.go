// Package repo finds the files that tests read from the elasti tree (the chart, config/,
// samples/, the dashboards) and from the modules that go.mod and the tool module test/tools/crds
// pin, such as Istio's and KEDA's CRDs. It locates the tree from its own source file, so a test
// finds it from any working directory.
package repo
