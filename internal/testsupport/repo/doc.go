// Package repo finds the files that tests read from the elasti tree (the chart, config/,
// samples/, the dashboards) and from the modules go.mod pins, such as Istio's CRDs. It locates
// the tree from its own source file, so a test finds it from any working directory.
package repo
