// Package e2e holds the end-to-end tests of dsrd. They need real kernel IPVS
// and network namespaces, so they are built only with the vmtest tag and run
// inside the VM lab: tests/vm/e2e builds them and runs them in one VM boot
// (see tests/vm/README.md). Outside the VM they skip; inside it
// (DSRD_TEST_PRIVILEGED=require) they never skip: a lab without IPVS fails
// them.
package e2e
