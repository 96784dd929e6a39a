package fsm

import (
	"fmt"
	"unicode/utf8"
)

// Fixed limits. They are part of the replicated format: every replica must
// judge a command the same way, so these are constants, never per-node
// configuration. Limits that an operator may tune (value size, batch size)
// are enforced by the server before a command is proposed.
const (
	// MaxNamespaceBytes is the longest namespace name.
	MaxNamespaceBytes = 128
	// MaxObjectNameBytes is the longest object name.
	MaxObjectNameBytes = 512
	// MaxKeyBytes is the longest key.
	MaxKeyBytes = 2048
	// NumShards is the number of virtual shards objects map to.
	NumShards = 256
)

// ValidateNamespace reports whether name is a valid namespace name: 1 to
// MaxNamespaceBytes of ASCII letters, digits, '-', '_' and '.', not "." or
// "..".
func ValidateNamespace(name string) error {
	if name == "" {
		return fmt.Errorf("%w: namespace must not be empty", ErrInvalidArgument)
	}
	if len(name) > MaxNamespaceBytes {
		return fmt.Errorf("%w: namespace is %d bytes, limit is %d", ErrInvalidArgument, len(name), MaxNamespaceBytes)
	}
	if name == "." || name == ".." {
		return fmt.Errorf("%w: namespace must not be %q", ErrInvalidArgument, name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		if !ok {
			return fmt.Errorf("%w: namespace %q holds %q; allowed are letters, digits, '-', '_' and '.'", ErrInvalidArgument, name, c)
		}
	}
	return nil
}

// ValidateObjectName reports whether name is a valid object name: valid
// UTF-8, 1 to MaxObjectNameBytes bytes.
func ValidateObjectName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: object must not be empty", ErrInvalidArgument)
	}
	if len(name) > MaxObjectNameBytes {
		return fmt.Errorf("%w: object is %d bytes, limit is %d", ErrInvalidArgument, len(name), MaxObjectNameBytes)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("%w: object is not valid UTF-8", ErrInvalidArgument)
	}
	return nil
}

// ValidateKey reports whether key is a valid key: valid UTF-8, 1 to
// MaxKeyBytes bytes. field names the key in the error ("key",
// "puts[3].key").
func ValidateKey(field, key string) error {
	if key == "" {
		return fmt.Errorf("%w: %s must not be empty", ErrInvalidArgument, field)
	}
	if len(key) > MaxKeyBytes {
		return fmt.Errorf("%w: %s is %d bytes, limit is %d", ErrInvalidArgument, field, len(key), MaxKeyBytes)
	}
	if !utf8.ValidString(key) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidArgument, field)
	}
	return nil
}

// ShardOf returns the virtual shard of object (ns, name): FNV-1a (32 bit)
// over ns, a zero byte and name, modulo NumShards. The function is part of
// the on-disk format and must never change.
func ShardOf(ns, name string) uint8 {
	const offset, prime = 2166136261, 16777619
	h := uint32(offset)
	for i := 0; i < len(ns); i++ {
		h ^= uint32(ns[i])
		h *= prime
	}
	h *= prime // the zero separator: h ^= 0 is a no-op
	for i := 0; i < len(name); i++ {
		h ^= uint32(name[i])
		h *= prime
	}
	return uint8(h % NumShards)
}
