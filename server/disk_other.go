//go:build !unix

package server

import "errors"

// availableBytes is not implemented here: the node logs that it cannot
// measure its free space, and its reserve is not enforced.
func availableBytes(string) (uint64, error) {
	return 0, errors.New("free space is not measured on this platform")
}
