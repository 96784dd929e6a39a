// Command cairn is the cairn server and its command-line tool.
package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	cmd, err := newRootCmd().ExecuteC()
	if err != nil {
		msg := err.Error()
		// Only a command that dials --endpoints can have been given a
		// wrong one (serve --join reaches other addresses, as it says).
		if h := errorHint(msg); h != "" && cmd != nil && cmd.Flags().Lookup("endpoints") != nil {
			msg += " (" + h + ")"
		}
		fmt.Fprintln(os.Stderr, "cairn:", msg)
		os.Exit(1)
	}
}

// errorHint says what an error most likely means, where its own words
// (another library's) do not say it to someone using cairn.
func errorHint(msg string) string {
	// grpc-go, when the address answers in something else than HTTP/2,
	// most likely HTTP/1.1 (a REST address): the answer's first bytes, read
	// as an HTTP/2 frame header, make a frame too large.
	if strings.Contains(msg, "error reading server preface") && strings.Contains(msg, "frame too large") {
		return "an address in --endpoints did not answer in gRPC: --endpoints (CAIRN_ENDPOINTS) takes the nodes' gRPC addresses, " +
			"127.0.0.1:7401-7403 for cairn dev, not their REST addresses"
	}
	return ""
}
