// Command anycast reports the BGP scale-out benchmark
// (tests/bench/anycast/run): the measuring side is the test in
// anycast_vm_test.go (build tag vmbench), run in the VM lab; this command
// turns its results file into the tables of docs/benchmarks.md.
//
//	anycast report RESULTS
//	    The tables, in Markdown, from the results file the run wrote.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) != 3 || os.Args[1] != "report" {
		fmt.Fprintln(os.Stderr, "usage: anycast report RESULTS")
		os.Exit(2)
	}
	if err := report(os.Args[2]); err != nil {
		fmt.Fprintf(os.Stderr, "anycast report: %v\n", err)
		os.Exit(1)
	}
}

func report(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	res, err := ParseResults(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return Render(os.Stdout, res)
}
