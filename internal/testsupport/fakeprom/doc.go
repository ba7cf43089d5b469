// Package fakeprom is a stand-in Prometheus for elasti's prometheus trigger, shared by the
// envtest suites, the e2e tier and the cold-start benchmark. It speaks the instant query API and
// says only what those tiers need: busy, idle or unreachable. Scenarios that need real series
// use a real Prometheus.
package fakeprom
